/** Pencil-and-paper arithmetic written as steps a tiny model can imitate and a process reward
 * can verify: every step is a literally true equation (`5+6+1=12`, `12-1-6=5`, `4*3+2=14`).
 * Digits are taken least significant first, the way the work is done on paper. */

export interface Worked {
  steps: string[];
  /** Steps that take a carry (addition, multiplication) or pay back a borrow (subtraction)
   * from the previous column; a last column's overflow (`5+6=11`) is not a carry. */
  carries: number;
}

function digits(n: number): number[] {
  return [...String(n)].reverse().map(Number);
}

/** `58+67`: `8+7=15, 5+6+1=12`. A shorter operand's missing digits are written as 0. */
export function addColumns(a: number, b: number): Worked {
  const da = digits(a);
  const db = digits(b);
  const steps: string[] = [];
  let carry = 0;
  let carries = 0;
  for (let i = 0; i < Math.max(da.length, db.length); i++) {
    const x = da[i] ?? 0;
    const y = db[i] ?? 0;
    const sum = x + y + carry;
    steps.push(`${x}+${y}${carry ? `+${carry}` : ""}=${sum}`);
    if (carry) carries++;
    carry = sum >= 10 ? 1 : 0;
  }
  return { steps, carries };
}

/** `523-167` (needs a ≥ b): `13-7=6, 12-1-6=5, 5-1-1=3`; a borrowed ten is added to the top
 * digit and paid back as `-1` in the next column. */
export function subtractColumns(a: number, b: number): Worked {
  if (a < b) throw new Error(`subtractColumns: ${a}-${b} would be negative`);
  const da = digits(a);
  const db = digits(b);
  const steps: string[] = [];
  let borrow = 0;
  let carries = 0;
  for (let i = 0; i < da.length; i++) {
    const y = db[i] ?? 0;
    const needs = da[i]! - borrow < y;
    const x = needs ? da[i]! + 10 : da[i]!;
    steps.push(`${x}-${borrow ? "1-" : ""}${y}=${x - borrow - y}`);
    if (borrow) carries++;
    borrow = needs ? 1 : 0;
  }
  return { steps, carries };
}

/** `47*3`: `7*3=21, 4*3+2=14`. A multi-digit multiplier gets one such row per digit, then the
 * shifted partial products are added in one step: `47*36`: `…, 282+1410=1692`. */
export function multiplyColumns(a: number, b: number): Worked {
  const rows = digits(b).map((m) => multiplyByDigit(a, m));
  const steps = rows.flatMap((row) => row.steps);
  const carries = rows.reduce((sum, row) => sum + row.carries, 0);
  if (rows.length > 1) {
    const partials = rows.map((row, i) => row.product * 10 ** i);
    steps.push(`${partials.join("+")}=${a * b}`);
  }
  return { steps, carries };
}

function multiplyByDigit(a: number, m: number): Worked & { product: number } {
  const steps: string[] = [];
  let carry = 0;
  let carries = 0;
  for (const x of digits(a)) {
    const product = x * m + carry;
    steps.push(`${x}*${m}${carry ? `+${carry}` : ""}=${product}`);
    if (carry) carries++;
    carry = Math.floor(product / 10);
  }
  return { steps, carries, product: a * m };
}
