/** AdapterError: one closed set of codes, each with its kind, and one place where a kind becomes words. */
import { describe, expect, it } from 'vitest';
import { AdapterError, adapterErrorCode, hostFailureLead, hostFailureSentence } from '../../src/adapters/types.js';

describe('AdapterError kinds', () => {
  it('merged codes keep one meaning each', () => {
    const kinds = (['timeout', 'not-found', 'cancelled', 'host-key', 'connection', 'in-use', 'exit'] as const).map((code) => new AdapterError('h', 'op', 'x', { code }).kind);
    expect(kinds).toEqual(['timeout', 'not-found', 'cancelled', 'auth', 'unreachable', 'conflict', 'platform']);
    expect(new AdapterError('h', 'op', 'x').kind).toBe('platform');
  });

  it('a code that arrives as data is kept only if Ferry knows it', () => {
    expect(adapterErrorCode('in-use', 'powershell')).toBe('in-use');
    expect(adapterErrorCode('Some-Other-Code', 'powershell')).toBe('powershell');
    expect(adapterErrorCode(null, 'powershell')).toBe('powershell');
    expect(adapterErrorCode('toString', 'powershell')).toBe('powershell');
  });

  it('a host that refused the login is not said to be silent', () => {
    expect(hostFailureLead('esx02', new AdapterError('esx02', 'describeHost', 'refused', { code: 'auth' }))).toBe("esx02 refused Ferry's login or its host key did not match");
    expect(hostFailureLead('hyp05', new AdapterError('hyp05', 'listVms', 'timed out', { code: 'unreachable' }))).toBe('hyp05 did not answer');
    expect(hostFailureLead('hyp05', new Error('socket hang up'))).toBe('hyp05 did not answer');
  });

  it('a failure reads the same wherever it is told: the lead of its kind, then the platform\'s own words once', () => {
    const auth = new AdapterError('esx02', 'describeHost', 'describeHost on esx02: vCenter v1 refused the login for ferry: bad password', { code: 'auth' });
    expect(hostFailureSentence('esx02', auth)).toBe("esx02 refused Ferry's login or its host key did not match (describeHost on esx02: vCenter v1 refused the login for ferry: bad password)");
    // The lab's and SSH adapters' words already begin with the lead: said once, not twice.
    const silent = new AdapterError('hyp05', 'listVms', 'hyp05 did not answer (connection timed out)', { code: 'unreachable' });
    expect(hostFailureSentence('hyp05', silent)).toBe('hyp05 did not answer (connection timed out)');
    expect(hostFailureSentence('hyp05', new AdapterError('hyp05', 'npivInventory', 'hyp05 did not answer', { code: 'unreachable' }))).toBe('hyp05 did not answer');
    expect(hostFailureSentence('kvm01', new AdapterError('kvm01', 'migrateVm', 'virsh exited 1: domain busy', { code: 'in-use' }))).toBe('kvm01 answered, but is not in a state that allows it (virsh exited 1: domain busy)');
    // A deadline of Ferry's own (retry.ts withDeadline) is silence, with what did not finish.
    expect(hostFailureSentence('hyp03', new Error('sweep of hyp03 did not finish within 90s'))).toBe('hyp03 did not answer (sweep of hyp03 did not finish within 90s)');
  });
});
