/**
 * HTTP(S) POSTs to vCenter's /sdk with the TLS policy the configuration asks for:
 * a CA file, a pinned SHA-256 certificate thumbprint, or (only when configured) no checks.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';

export interface TransportOptions {
  url: string;
  caFile?: string;
  /** SHA-256 of the server certificate, "AB:CD:…" (colons and case optional). */
  thumbprint?: string;
  insecure?: boolean;
  timeoutMs: number;
}

export interface HttpReply {
  status: number;
  body: string;
  setCookie: string[];
}

/** Transport-level failure (connect, TLS, timeout); SOAP faults are not this. */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly kind: 'timeout' | 'tls' | 'network' | 'aborted' | 'http',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransportError';
  }
}

export function normalizeThumbprint(t: string): string {
  const hex = t.replace(/[:\s]/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new Error('vsphere.thumbprint must be a SHA-256 fingerprint (64 hex digits, colons optional)');
  return hex;
}

/**
 * Pinning happens before the agent hands the socket to a request: Node only runs
 * checkServerIdentity after the chain verified, which a self-signed vCenter certificate never
 * does, so the fingerprint is compared on 'secureConnect' here instead.
 */
class PinnedAgent extends https.Agent {
  constructor(
    private readonly pin: string,
    opts: https.AgentOptions,
  ) {
    super(opts);
  }

  override createConnection(options: tls.ConnectionOptions, callback: (err: Error | null, socket?: Duplex) => void): Duplex | undefined {
    const socket = tls.connect({ ...options, rejectUnauthorized: false });
    const onError = (err: Error): void => callback(err);
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      socket.off('error', onError);
      const seen = (socket.getPeerCertificate()?.fingerprint256 ?? '').replace(/:/g, '').toUpperCase();
      if (seen !== this.pin) {
        socket.destroy();
        callback(new TransportError(`certificate thumbprint ${seen || '(none)'} does not match the pinned vsphere.thumbprint`, 'tls'));
        return;
      }
      callback(null, socket);
    });
    return undefined;
  }
}

export class Transport {
  private readonly agent: http.Agent;
  private readonly target: URL;

  constructor(private readonly opts: TransportOptions) {
    this.target = new URL(opts.url);
    if (this.target.protocol === 'http:') {
      this.agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    } else if (opts.thumbprint) {
      this.agent = new PinnedAgent(normalizeThumbprint(opts.thumbprint), { keepAlive: true, maxSockets: 8 });
    } else {
      this.agent = new https.Agent({
        keepAlive: true,
        maxSockets: 8,
        ca: opts.caFile ? fs.readFileSync(opts.caFile) : undefined,
        rejectUnauthorized: !opts.insecure,
      });
    }
  }

  get endpoint(): string {
    return this.target.host;
  }

  post(body: string, headers: Record<string, string>, signal?: AbortSignal): Promise<HttpReply> {
    const mod = this.target.protocol === 'http:' ? http : https;
    return new Promise<HttpReply>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new TransportError('aborted', 'aborted'));
        return;
      }
      const req = mod.request(
        this.target,
        {
          method: 'POST',
          agent: this.agent,
          headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => finish(new TransportError(`reading the reply: ${err.message}`, 'network', { cause: err })));
          res.on('end', () => {
            const sc = res.headers['set-cookie'];
            finish(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), setCookie: sc ?? [] });
          });
        },
      );
      let done = false;
      const timer = setTimeout(() => {
        req.destroy(new TransportError(`no reply within ${this.opts.timeoutMs} ms`, 'timeout'));
      }, this.opts.timeoutMs);
      const onAbort = (): void => {
        req.destroy(new TransportError('aborted', 'aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const finish = (err?: Error, reply?: HttpReply): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(reply!);
      };
      req.on('error', (err) => {
        if (err instanceof TransportError) finish(err);
        else finish(classify(err));
      });
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function classify(err: Error): TransportError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME|ALTNAME/.test(code) || /certificate/i.test(err.message)) {
    return new TransportError(`TLS verification failed: ${err.message}`, 'tls', { cause: err });
  }
  return new TransportError(err.message || code || 'connection failed', 'network', { cause: err });
}
