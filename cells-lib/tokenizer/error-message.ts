// Caught values are `unknown`; this gives the text to embed in a message that
// names the file at fault.
export const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
