import { describe, expect, it } from 'vitest';
import { compressNames, expandNames, resolveSelector, unknownHostsSentence } from '../../src/core/selectors.js';

const hosts = Array.from({ length: 99 }, (_, i) => `hyp${String(i + 1).padStart(2, '0')}`);
const inv = { hosts: [...hosts, 'esx01', 'esx02'], clusters: { 'prod-a': hosts.slice(0, 24), 'prod-b': hosts.slice(24, 48), vmw: ['esx01', 'esx02'] } };
const max = 200;

describe('selectors: expansion', () => {
  it.each([
    ['hyp03', ['hyp03']],
    ['hyp01..hyp03', ['hyp01', 'hyp02', 'hyp03']],
    ['hyp[01-03]', ['hyp01', 'hyp02', 'hyp03']],
    ['hyp01,hyp05', ['hyp01', 'hyp05']],
    ['hyp05, hyp01', ['hyp01', 'hyp05']],
    ['hyp01 hyp05', ['hyp01', 'hyp05']],
    ['hyp01..hyp05,!hyp03', ['hyp01', 'hyp02', 'hyp04', 'hyp05']],
    ['hyp01..hyp05 except hyp03', ['hyp01', 'hyp02', 'hyp04', 'hyp05']],
    ['hyp01..hyp05 except hyp02,hyp04', ['hyp01', 'hyp03', 'hyp05']],
    ['hyp01..hyp05 !hyp[02-04]', ['hyp01', 'hyp05']],
    ['cluster:vmw', ['esx01', 'esx02']],
    ['cluster:prod-a !hyp01..hyp22', ['hyp23', 'hyp24']],
    ['HYP03', ['hyp03']],
    ['hyp01,hyp01', ['hyp01']],
    ['hyp09..hyp11', ['hyp09', 'hyp10', 'hyp11']],
  ])('%s', (sel, want) => {
    const r = resolveSelector(sel, inv, { max });
    expect(r).toEqual({ ok: true, value: { hosts: want, unknown: [], unknownExcluded: [] } });
  });

  it('expands 99 hosts with zero padding kept', () => {
    const r = resolveSelector('hyp01..hyp99', inv, { max });
    expect(r.ok && r.value.hosts).toEqual(hosts);
  });

  it('reports unknown names by name, never drops them', () => {
    const r = resolveSelector('hyp98..hyp102', inv, { max });
    expect(r).toEqual({ ok: true, value: { hosts: ['hyp98', 'hyp99'], unknown: ['hyp100', 'hyp101', 'hyp102'], unknownExcluded: [] } });
    expect(unknownHostsSentence(['hyp100', 'hyp101', 'hyp102'], inv)).toBe('3 names are not in the inventory: hyp100…hyp102.');
    expect(unknownHostsSentence(['hpy03'], inv)).toBe('hpy03 is not in the inventory; did you mean hyp03?');
  });

  it('unpadded ranges stay unpadded', () => {
    expect(expandNames('h1..h3')).toEqual({ ok: true, value: ['h1', 'h2', 'h3'] });
    expect(expandNames('node8..node10')).toEqual({ ok: true, value: ['node8', 'node9', 'node10'] });
  });
});

describe('selectors: one clear sentence for bad input', () => {
  it.each([
    ['hyp99..hyp01', 'The range hyp99..hyp01 runs backwards; did you mean hyp01..hyp99?'],
    ['hyp[99-01]', 'The range hyp[99-01] runs backwards; did you mean hyp[01-99]?'],
    ['hyp01..esx09', 'The range hyp01..esx09 mixes the prefixes "hyp" and "esx"; a range stays within one prefix, e.g. hyp01..hyp09.'],
    ['hyp1..hyp100000', 'The range hyp1..hyp100000 names 100000 hosts, over the limit of 200; split it into smaller ranges.'],
    ['hyp01..', '"hyp01.." is not a range; a range is two numbered names of one prefix, e.g. hyp01..hyp12.'],
    ['hyp[01-', '"hyp[01-" is not a range; the bracket form is prefix[first-last], e.g. hyp[01-12].'],
    ['cluster:prod-z', 'There is no cluster "prod-z"; did you mean cluster:prod-a?'],
    ['cluster:', '"cluster:" needs a cluster name after "cluster:", e.g. cluster:prod-a.'],
    ['!hyp01', 'That selector only excludes hosts; say which hosts to include first, e.g. cluster:prod-a !hyp42.'],
    ['hyp01 except', '"except" needs the hosts to leave out, e.g. except hyp42.'],
    ['', 'Which hosts? Give a selector such as hyp03, hyp01..hyp12, hyp[01-12] or cluster:prod-a.'],
    ['9lives', '"9lives" is not a host name; names are letters, digits, ".", "_" and "-", starting with a letter.'],
  ])('%j', (sel, sentence) => {
    expect(resolveSelector(sel, inv, { max })).toEqual({ ok: false, error: sentence });
  });

  it('refuses a total over the maximum even when each range fits', () => {
    const r = resolveSelector('hyp01..hyp40,hyp41..hyp80', inv, { max: 50 });
    expect(r).toEqual({ ok: false, error: 'That selector names 80 hosts, over the limit of 50; narrow it down.' });
  });
});

describe('compressNames', () => {
  it.each([
    [['hyp01', 'hyp02', 'hyp03'], 'hyp01…hyp03'],
    [['hyp01', 'hyp02', 'hyp04'], 'hyp01, hyp02, hyp04'],
    [['hyp09', 'hyp10', 'hyp11', 'esx01'], 'hyp09…hyp11, esx01'],
    [[], ''],
  ])('%j', (names, text) => expect(compressNames(names)).toBe(text));
});
