#!/usr/bin/env node
// Node 20 cannot run TypeScript by itself: register tsx, then run the CLI source.
import { register } from "tsx/esm/api";

register();
await import("../cli/main.ts");
