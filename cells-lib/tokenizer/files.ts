// Reading a tokenizer directory's files, with errors that name the file.

import { readFile, stat } from "node:fs/promises";
import { errorMessage } from "./error-message.ts";
import { isObject, type JsonObject } from "./json.ts";

export const isNotFound = (err: unknown): boolean => isObject(err) && (err.code === "ENOENT" || err.code === "ENOTDIR");

export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

export async function readJsonObject(path: string): Promise<JsonObject> {
  const text = await readText(path);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: invalid JSON: ${errorMessage(err)}`, { cause: err });
  }
  if (!isObject(value)) {
    const got = Array.isArray(value) ? "an array" : value === null ? "null" : typeof value;
    throw new Error(`${path}: expected a JSON object at the top level, got ${got}`);
  }
  return value;
}

export async function readOptionalJson(path: string): Promise<JsonObject | undefined> {
  return (await fileExists(path)) ? readJsonObject(path) : undefined;
}
