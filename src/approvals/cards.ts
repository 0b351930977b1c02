/**
 * The approval card for a stale-port removal: who asked, the exact plan (host, WWPN, fabric,
 * HBA), how many approvals, who may give them, when it expires, and the warning that a
 * removed port cannot be restored, all before anyone approves. One card per request, redrawn
 * in place on every decision and as the removal runs; only a pending card has buttons, so an
 * expired, rejected, void or finished card cannot be clicked into doing anything.
 */
import { context, escapeText, message, plural, section, type Block, type Button, type Message } from '../chat/messages.js';
import { mention } from '../core/permissions.js';
import { compressNames } from '../core/selectors.js';
import { formatUtcTime, statusLine, whoMayApprove, type ApprovalRequest } from './policy.js';

/** One port of a frozen removal plan: exactly what the card shows and the job removes. */
export interface PlannedPort {
  host: string;
  wwpn: string;
  fabric: string;
  /** The physical HBA the virtual port lives on. */
  hba: string;
}

export interface PortOutcome {
  /** 1-based position in the plan: "port 3 of 7". */
  n: number;
  host: string;
  wwpn: string;
  outcome: 'removed' | 'skipped' | 'failed';
  reason?: string;
}

export interface RemovalProgress {
  status: 'queued' | 'running' | 'done';
  results: PortOutcome[];
  /** Set while the kill switch holds the job. */
  paused?: string;
}

export const APPROVE_ACTION = 'ferry:approve';
export const REJECT_ACTION = 'ferry:reject';
/** The Reject button's modal (its reason), submitted as a form. */
export const REJECT_VIEW = 'ferry:reject';

/** Button value: the request id and the hash of the plan this card shows. */
export function buttonValue(request: ApprovalRequest<unknown>): string {
  return `${request.id}:${request.planHash}`;
}

export function parseButtonValue(value: string): { id: string; planHash?: string } {
  const [id = '', planHash] = value.split(':', 2);
  return { id, planHash: planHash || undefined };
}

export const NO_UNDO = 'A removed port cannot be restored: there is no rollback.';

function outcomeCell(o: PortOutcome | undefined): string {
  if (!o) return '';
  if (o.outcome === 'removed') return 'removed';
  return `${o.outcome}: ${o.reason ?? ''}`.trim();
}

export function removalHeadline(ports: readonly PlannedPort[]): string {
  const hosts = [...new Set(ports.map((p) => p.host))];
  return `remove ${plural(ports.length, 'stale port')} on ${compressNames(hosts)}`;
}

export function tally(results: readonly PortOutcome[]): { removed: number; skipped: number; failed: number } {
  return {
    removed: results.filter((r) => r.outcome === 'removed').length,
    skipped: results.filter((r) => r.outcome === 'skipped').length,
    failed: results.filter((r) => r.outcome === 'failed').length,
  };
}

export function renderApprovalCard(request: ApprovalRequest<PlannedPort[]>, progress?: RemovalProgress): Message {
  const ports = request.plan;
  const byN = new Map(progress?.results.map((r) => [r.n, r]) ?? []);
  const executing = progress !== undefined && request.status === 'executed';
  const blocks: Block[] = [
    section(`*Remove ${plural(ports.length, 'stale port')}* · request ${request.id}`),
    section(`Asked by ${mention(request.requester)} at ${formatUtcTime(request.createdAt)}: ${request.summary}`),
    {
      type: 'table',
      title: '*Plan* (frozen: exactly these ports, nothing else)',
      columns: executing ? ['#', 'Host', 'WWPN', 'Fabric', 'HBA', 'Result'] : ['#', 'Host', 'WWPN', 'Fabric', 'HBA'],
      rows: ports.map((p, i) => {
        const row = [String(i + 1), p.host, p.wwpn, p.fabric, p.hba];
        return executing ? [...row, outcomeCell(byN.get(i + 1))] : row;
      }),
    },
  ];
  if (request.status === 'pending') {
    blocks.push(section(`:warning: *${NO_UNDO}* Each port is checked again just before removal and skipped if a VM uses it by then; compare the WWPNs with the VMs' configuration before approving.`));
    blocks.push({
      type: 'fields',
      fields: [`*Approvals needed*\n${request.required}`, `*Who may approve*\n${whoMayApprove(request)}`, `*Expires*\n${formatUtcTime(request.expiresAt)}`],
    });
  }
  const decisions = request.decisions.map((d) => `${d.decision === 'approve' ? '✓ approved' : '✗ rejected'} by ${mention(d.user)} at ${formatUtcTime(d.at)}${d.reason ? `: ${escapeText(d.reason)}` : ''}`);
  if (decisions.length) blocks.push(context(decisions.join(' · ')));
  if (executing) {
    const t = tally(progress.results);
    const done = progress.results.length;
    blocks.push({ type: 'progress', done, total: ports.length, label: `${done}/${ports.length} ports · ${t.removed} removed · ${t.skipped} skipped · ${t.failed} failed` });
    if (progress.paused) blocks.push(section(progress.paused));
    if (progress.status === 'done') blocks.push(section(`*Done:* ${summaryLine(ports.length, progress.results)}`));
  }
  blocks.push(context(`${statusLine(request)}${request.status === 'pending' ? '' : ` · ${NO_UNDO}`}`));
  if (request.status === 'pending') blocks.push({ type: 'actions', buttons: approvalButtons(request) });
  return message(`Approval request ${request.id}: ${request.summary} · ${statusLine(request)}`, ...blocks);
}

export function summaryLine(total: number, results: readonly PortOutcome[]): string {
  const t = tally(results);
  const parts = [`${t.removed} of ${total} removed`];
  if (t.skipped) parts.push(`${t.skipped} skipped`);
  if (t.failed) parts.push(`${t.failed} failed`);
  const missing = total - results.length;
  if (missing > 0) parts.push(`${missing} not attempted`);
  return `${parts.join(', ')}.`;
}

export function approvalButtons(request: ApprovalRequest<PlannedPort[]>): Button[] {
  const value = buttonValue(request);
  const n = request.plan.length;
  return [
    {
      action: APPROVE_ACTION,
      label: 'Approve…',
      value,
      style: 'primary',
      confirm: {
        title: 'Approve the removal?',
        text: `Remove ${plural(n, 'port')} (${request.summary}). ${NO_UNDO}`,
        confirm: `Remove ${plural(n, 'port')}`,
        deny: 'Back',
      },
      command: `approve ${request.id}`,
    },
    { action: REJECT_ACTION, label: 'Reject…', value, style: 'danger', command: `reject ${request.id} [reason]` },
  ];
}

// ---------------------------------------------------------------------------------------
// Any other action (drain, migrate, override, rolling run): the same card around its plan

export interface RequestCardParts {
  /** "Drain hyp03" (bold, followed by "· request 12"). */
  title: string;
  /** The plan as its action draws it (tables, lines). */
  plan: Block[];
  /** Said before approval, next to the approvals needed (e.g. what rollback does). */
  note?: string;
  /** Approve's confirm dialog. */
  confirm: { title: string; text: string; confirm: string };
}

/**
 * Who asked, the frozen plan, approvals needed, who may approve, expiry, decisions so far and
 * the status line; Approve/Reject only while pending, so a finished card cannot be clicked into
 * doing anything.
 */
export function renderRequestCard(request: ApprovalRequest<unknown>, parts: RequestCardParts): Message {
  const blocks: Block[] = [
    section(`*${parts.title}* · request ${request.id}`),
    section(`Asked by ${mention(request.requester)} at ${formatUtcTime(request.createdAt)}: ${request.summary}`),
    ...parts.plan,
  ];
  if (request.status === 'pending') {
    if (parts.note) blocks.push(section(parts.note));
    blocks.push({
      type: 'fields',
      fields: [`*Approvals needed*\n${request.required}`, `*Who may approve*\n${whoMayApprove(request)}`, `*Expires*\n${formatUtcTime(request.expiresAt)}`],
    });
  }
  const decisions = request.decisions.map((d) => `${d.decision === 'approve' ? '✓ approved' : '✗ rejected'} by ${mention(d.user)} at ${formatUtcTime(d.at)}${d.reason ? `: ${escapeText(d.reason)}` : ''}`);
  if (decisions.length) blocks.push(context(decisions.join(' · ')));
  blocks.push(context(statusLine(request)));
  if (request.status === 'pending') {
    const value = buttonValue(request);
    blocks.push({
      type: 'actions',
      buttons: [
        { action: APPROVE_ACTION, label: 'Approve…', value, style: 'primary', confirm: { ...parts.confirm, deny: 'Back' }, command: `approve ${request.id}` },
        { action: REJECT_ACTION, label: 'Reject…', value, style: 'danger', command: `reject ${request.id} [reason]` },
      ],
    });
  }
  return message(`Approval request ${request.id}: ${request.summary} · ${statusLine(request)}`, ...blocks);
}
