/**
 * The client side of slack-e2e's "20 commands at once", in its own process: Slack sends from
 * its own machines, so neither the stand-in Web API nor the bench's bookkeeping may share this
 * event loop. Plain node (no tsx) and node:net, so little of the client's own start or parsing
 * cost lands in the figures.
 *
 * IPC protocol with the parent (child_process.fork):
 *   { type: 'open', port, requests: [{ headers, body }] }  -> opens one socket per request,
 *                                                             answers { type: 'ready' }
 *   { type: 'go' }                                         -> writes every request at once,
 *                                                             answers { type: 'result', results }
 * results[i] = { status, ms, text }: ms from the write of request i to its full response.
 * The bodies come signed from the parent, made before the clock starts.
 */
import net from 'node:net';

/** @type {{ socket: net.Socket, raw: Buffer, wrote: number, done: Promise<{ status: number, ms: number, text: string }> }[]} */
let open = [];

/** Resolves with the response once its headers and the whole body (Content-Length or chunked) are in. */
function response(socket, slot) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      const at = performance.now();
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const rest = buf.subarray(end + 4);
      const status = Number(head.split(' ')[1]);
      const length = /^content-length:\s*(\d+)/im.exec(head);
      let body;
      if (length) {
        if (rest.length < Number(length[1])) return;
        body = rest.subarray(0, Number(length[1]));
      } else if (/^transfer-encoding:\s*chunked/im.test(head)) {
        if (rest.indexOf('0\r\n\r\n') < 0) return;
        const parts = [];
        let i = 0;
        for (;;) {
          const eol = rest.indexOf('\r\n', i);
          const n = parseInt(rest.subarray(i, eol).toString('latin1'), 16);
          if (!n) break;
          parts.push(rest.subarray(eol + 2, eol + 2 + n));
          i = eol + 2 + n + 2;
        }
        body = Buffer.concat(parts);
      } else {
        body = Buffer.alloc(0);
      }
      socket.destroy();
      resolve({ status, ms: at - slot.wrote, text: body.toString('utf8') });
    });
    socket.on('error', reject);
  });
}

process.on('message', async (msg) => {
  if (msg.type === 'open') {
    open = await Promise.all(
      msg.requests.map(
        (r) =>
          new Promise((resolve, reject) => {
            const socket = net.connect(msg.port, '127.0.0.1', () => {
              socket.setNoDelay(true);
              const head = [
                'POST /slack/events HTTP/1.1',
                `host: 127.0.0.1:${msg.port}`,
                'connection: close',
                `content-length: ${Buffer.byteLength(r.body)}`,
                ...Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`),
                '',
                '',
              ].join('\r\n');
              const slot = { socket, raw: Buffer.from(head + r.body), wrote: 0, done: undefined };
              slot.done = response(socket, slot);
              resolve(slot);
            });
            socket.once('error', reject);
          }),
      ),
    );
    process.send({ type: 'ready' });
  } else if (msg.type === 'go') {
    for (const slot of open) {
      slot.wrote = performance.now();
      slot.socket.write(slot.raw);
    }
    const results = await Promise.all(open.map((s) => s.done));
    open = [];
    process.send({ type: 'result', results });
  }
});
