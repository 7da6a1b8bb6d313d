/** Errors about a data file's contents: each names the file and, where it can, the line. */
export class DatasetError extends Error {
  override name = "DatasetError";
}
