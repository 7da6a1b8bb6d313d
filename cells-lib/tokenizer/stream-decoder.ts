import type { DecodeOptions, Tokenizer } from "./tokenizer.ts";

/**
 * Incremental detokenizer for streaming generation. Decoding ids one by one
 * and concatenating is wrong for byte-level and byte-fallback vocabularies (a
 * character can span tokens) and for decoders that strip a leading space, so
 * each delta is the difference between decoding a short window with and
 * without the new ids. Text is held back while it ends in an incomplete UTF-8
 * sequence (U+FFFD), and flush() releases whatever is left.
 */
export class StreamDecoder {
  // ids[0..readEnd) is emitted text kept as context the next delta is measured
  // against; ids[readEnd..) is not yet emitted.
  private ids: number[] = [];
  private readEnd = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: DecodeOptions = {},
  ) {}

  /** Adds one id; returns the newly completed text (possibly ""). */
  push(id: number): string {
    this.ids.push(id);
    const { before, after } = this.decodeWindow();
    if (after.length <= before.length || after.endsWith("\uFFFD")) return "";
    // Keep only the last emitted ids as context so memory stays bounded on long generations.
    this.ids = this.ids.slice(this.readEnd);
    this.readEnd = this.ids.length;
    return after.slice(before.length);
  }

  /** Returns text still held back (e.g. an unfinished UTF-8 sequence) and resets. */
  flush(): string {
    const { before, after } = this.decodeWindow();
    this.ids = [];
    this.readEnd = 0;
    return after.slice(before.length);
  }

  private decodeWindow(): { before: string; after: string } {
    return {
      before: this.tokenizer.decode(this.ids.slice(0, this.readEnd), this.options),
      after: this.tokenizer.decode(this.ids, this.options),
    };
  }
}
