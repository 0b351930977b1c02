/** PowerShell quoting as PowerShell itself reads it, for tests of the scripts Ferry sends. */

/**
 * PowerShell's own reading of a single-quoted literal starting at `from`: any of ' ‘ ’ ‚ ‛
 * ends it unless doubled. Returns the value and where the literal ended.
 */
export function readPsLiteral(text: string, from: number): { value: string; end: number } {
  const isQ = (c: string | undefined): boolean => c !== undefined && /['\u2018\u2019\u201A\u201B]/.test(c);
  if (!isQ(text[from])) throw new Error(`no literal at ${from}`);
  let value = '';
  for (let i = from + 1; i < text.length; i++) {
    const c = text[i]!;
    if (isQ(c)) {
      if (isQ(text[i + 1])) {
        value += c;
        i++;
        continue;
      }
      return { value, end: i + 1 };
    }
    value += c;
  }
  throw new Error('unterminated literal');
}
