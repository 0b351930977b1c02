/**
 * A bug that escapes every handler, on demand, in a real Ferry process (test/ops/entrypoints):
 * preloaded with `node --import`, it makes SIGUSR2 throw from a signal listener (an uncaught
 * exception) or, with FERRY_TEST_FAULT=reject, reject a promise nobody awaits (an unhandled
 * rejection). Plain erasable TypeScript with no imports, so Node runs it as it is.
 */
process.on('SIGUSR2', () => {
  if (process.env.FERRY_TEST_FAULT === 'reject') void Promise.reject(new Error('a rejection nobody handles'));
  else throw new Error('a bug no handler catches');
});
