/**
 * Routes each conversation to its surface: Slack (when this process has a token) or the
 * console. Workflows hold one as `deps.outbox` and never know which surface a thread is on.
 */
import type { Message } from './messages.js';
import type { Conversation, MessageRef, Surface } from './conversation.js';

export class SurfaceRouter implements Surface {
  constructor(
    private readonly surfaces: { slack?: Surface; console: Surface },
    private readonly onMissingSlack: (conv: Conversation) => void = () => {},
    /** Before a post or an update: a job run that lost its job (jobs/fence.ts) says nothing more. */
    private readonly before: () => Promise<void> = async () => {},
    /** Configuration details (key paths, vCenter endpoint and user) taken out of everything said (redact.ts). */
    private readonly redact: (msg: Message) => Message = (m) => m,
  ) {}

  private route(conv: Conversation): Surface | undefined {
    if (conv.surface === 'console') return this.surfaces.console;
    if (!this.surfaces.slack) this.onMissingSlack(conv);
    return this.surfaces.slack;
  }

  async post(conv: Conversation, msg: Message): Promise<MessageRef | null> {
    await this.before();
    return (await this.route(conv)?.post(conv, this.redact(msg))) ?? null;
  }

  async update(conv: Conversation, ref: MessageRef, msg: Message): Promise<void> {
    await this.before();
    await this.route(conv)?.update(conv, ref, this.redact(msg));
  }

  async ephemeral(conv: Conversation, msg: Message): Promise<void> {
    await this.route(conv)?.ephemeral(conv, this.redact(msg));
  }
}
