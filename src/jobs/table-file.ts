/**
 * A long table written as CSV into a Redis list, a page at a time, so a 10,000-host report is
 * never held whole in a Ferry process: the job writes rows as it reads results, and the Slack
 * surface streams the lines into the file upload (bot/slack/surface.ts).
 */
import type { Redis } from 'ioredis';
import type { TableFile } from '../chat/messages.js';

const PAGE = 500;
const KEEP_S = 7 * 86_400;

export function csvLine(cells: readonly string[]): string {
  return cells.map((v) => (/[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v)).join(',');
}

export class TableFileWriter {
  private page: string[] = [];
  private rows = 0;
  private bytes = 0;
  private started = false;

  constructor(
    private readonly redis: Redis,
    readonly key: string,
    private readonly columns: readonly string[],
  ) {}

  async add(row: readonly string[]): Promise<void> {
    if (!this.started) {
      this.started = true;
      // A retried job writes the file again from the start.
      await this.redis.del(this.key);
      this.push(csvLine(this.columns));
    }
    this.push(csvLine(row));
    this.rows++;
    if (this.page.length >= PAGE) await this.flush();
  }

  private push(line: string): void {
    this.page.push(line);
    this.bytes += Buffer.byteLength(line) + 1;
  }

  private async flush(): Promise<void> {
    if (!this.page.length) return;
    const lines = this.page;
    this.page = [];
    await this.redis.multi().rpush(this.key, ...lines).expire(this.key, KEEP_S).exec();
  }

  /** The file, or null when no row was added. */
  async close(): Promise<TableFile | null> {
    await this.flush();
    return this.rows ? { key: this.key, rows: this.rows, bytes: this.bytes } : null;
  }
}

/** The lines of a table file, page by page (for surfaces that stream it). */
export async function* tableFileLines(redis: Pick<Redis, 'lrange'>, file: TableFile): AsyncGenerator<string[]> {
  for (let start = 0; start < file.rows + 1; start += PAGE) {
    const lines = await redis.lrange(file.key, start, start + PAGE - 1);
    if (!lines.length) return;
    yield lines;
  }
}
