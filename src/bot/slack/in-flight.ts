/**
 * Slack requests received and not yet answered (the HTTP response is the ack). Work that
 * follows an ack (enqueueing a sweep, posting its card, the audit entry) waits until none is
 * left, so in a burst of commands every ack goes out before any of that work takes the event
 * loop: the acks never queue behind the burst's own follow-up work. Bounded, so a steady stream
 * of requests cannot hold the work back for long.
 */
export class InFlight {
  private count = 0;
  private waiters: (() => void)[] = [];

  /** A request arrived; the returned function is called once when its response is written or the request is gone. */
  begin(): () => void {
    this.count++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.count--;
      if (this.count === 0) this.wake();
    };
  }

  /**
   * Resolves once no request is waiting for its answer, at most `maxMs` from now. Checked after
   * the requests that have already reached the process (readable sockets) were taken in, so a
   * burst arriving at once counts whole.
   */
  async idle(maxMs: number): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    if (this.count === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      timer = setTimeout(resolve, maxMs);
    });
    clearTimeout(timer);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
