/**
 * PowerShell plumbing for the Hyper-V adapter: literal quoting, script wrapping and the
 * -EncodedCommand form. Every script Ferry sends goes through wrapScript + encodeCommand, so no
 * name can ever be parsed as code: names appear only inside single-quoted literals, and the
 * whole script travels as base64 of UTF-16LE (cmd.exe, sshd and the POSIX quoting of the SSH
 * layer never see a quote, space or metacharacter of it).
 */

/**
 * PowerShell treats U+2018..U+201B (typographic single quotes, seed 000 is full of them) exactly
 * like ' inside a single-quoted string, so each of them must be doubled too, not just '.
 */
const SINGLE_QUOTES = /['\u2018\u2019\u201A\u201B]/g;

/** Quote one value as a PowerShell single-quoted literal: it's -> 'it''s'. No expansion happens inside. */
export function psQuote(value: string): string {
  if (value.includes('\0')) throw new Error('refusing to quote a value containing NUL for PowerShell');
  return `'${value.replace(SINGLE_QUOTES, (q) => q + q)}'`;
}

/** A WWN as a PowerShell byte-array expression: [byte[]](0xC0,0x03,…). Input must already be normalised. */
export function psByteArray(wwn: string): string {
  if (!/^[0-9A-F]{16}$/.test(wwn)) throw new Error(`not a normalised WWN: ${JSON.stringify(wwn)}`);
  const bytes = wwn.match(/../g) ?? [];
  return `[byte[]](${bytes.map((b) => `0x${b}`).join(',')})`;
}

/** The marker comment that names a script on its first line; the test stand-in shell dispatches on it. */
export function scriptMarker(script: string): string | undefined {
  return /^# ferry:([a-z0-9-]+)/.exec(script)?.[1];
}

/**
 * Wrap an operation body into a complete script.
 * - $ErrorActionPreference='Stop' turns every non-terminating error into a catchable one.
 * - $ProgressPreference: progress records would otherwise arrive on stderr as CLIXML.
 * - Remove-TypeData System.Array: Windows PowerShell 5.1 otherwise serialises some arrays as
 *   {"value":[…],"Count":n}; the parser copes with that shape too, this just avoids it.
 * - OutputEncoding UTF-8 (no BOM): Windows PowerShell writes a pipe in the OEM code page, which
 *   would mangle non-ASCII VM names on their way back.
 * - The body assigns $out; the envelope is {"ok":true,"data":…} or {"ok":false,"error":…} so
 *   the adapter always gets JSON, even for a PowerShell error record (exit code 1).
 * - Fail 'code' 'message' raises an error the adapter maps to AdapterError.code.
 */
export function wrapScript(marker: string, body: string, depth = 8): string {
  if (!/^[a-z0-9-]+$/.test(marker)) throw new Error(`bad script marker ${marker}`);
  const lines = [
    `# ferry:${marker}`,
    `$ErrorActionPreference='Stop'`,
    `$ProgressPreference='SilentlyContinue'`,
    `try{Remove-TypeData System.Array -ErrorAction Stop}catch{}`,
    `try{[Console]::OutputEncoding=[Text.UTF8Encoding]::new($false)}catch{}`,
    `function Fail([string]$c,[string]$m){$x=[Exception]::new($m);$x.Data['FerryCode']=$c;throw $x}`,
    // Hex: byte array -> "C003FF6E…" (seed 000's loop); I: byte array -> int[] so JSON is always [n,…].
    `function Hex($b){if($null -eq $b){return $null};-join @(foreach($x in $b){([int]$x).ToString('X2')})}`,
    `function I($b){if($null -eq $b){return ,([int[]]@())};return ,([int[]]@($b))}`,
    `try{`,
    `$out=$null`,
    body.trim(),
    `[pscustomobject]@{ok=$true;data=$out}|ConvertTo-Json -Depth ${depth} -Compress`,
    `}catch{`,
    `$e=$_;$c=$e.Exception.Data['FerryCode'];if(-not $c){$c='powershell'}`,
    `[pscustomobject]@{ok=$false;error=[pscustomobject]@{code=[string]$c;message=[string]$e.Exception.Message;type=$e.Exception.GetType().FullName;category=[string]$e.CategoryInfo.Category;errorId=[string]$e.FullyQualifiedErrorId;line=$e.InvocationInfo.ScriptLineNumber}}|ConvertTo-Json -Depth 4 -Compress`,
    `exit 1`,
    `}`,
  ];
  return minify(lines.join('\n'));
}

/** Drop indentation and comment lines (except the marker) so scripts stay under cmd.exe's limit. */
function minify(script: string): string {
  return script
    .split('\n')
    .map((l) => l.trim())
    .filter((l, i) => l !== '' && (i === 0 || !l.startsWith('#')))
    .join('\n');
}

/** base64 of the UTF-16LE script: what powershell.exe -EncodedCommand expects. */
export function encodeCommand(script: string): string {
  return Buffer.from(script, 'utf16le').toString('base64');
}

export function decodeCommand(encoded: string): string {
  return Buffer.from(encoded, 'base64').toString('utf16le');
}

/**
 * OpenSSH for Windows runs commands through cmd.exe by default, whose command line is capped at
 * 8191 characters; every script must fit (tests check the largest with long hostile names).
 */
export const MAX_COMMAND_LINE = 8191;

export function powershellArgv(powershell: string, script: string): string[] {
  const argv = [powershell, '-NoProfile', '-NonInteractive', '-EncodedCommand', encodeCommand(script)];
  const length = argv.join(' ').length;
  if (length > MAX_COMMAND_LINE) {
    throw new Error(`PowerShell command line for ${scriptMarker(script) ?? 'script'} is ${length} characters, over cmd.exe's ${MAX_COMMAND_LINE}`);
  }
  return argv;
}
