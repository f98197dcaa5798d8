// Request/response across two hosts: ferry request waits for the reply that carries its correlation id.
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { FERRY_BIN, startDaemons, useClusters } from './fixtures.js';

const run = promisify(execFile);
const makeCluster = useClusters();

describe('ferry request', () => {
  it('gets the correlated reply from a responder on the peer, and leaves other replies alone', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    await startDaemons(cluster, 'alpha', 'beta');
    const alpha = cluster.host('alpha');
    const beta = cluster.host('beta');
    // An unrelated reply already waiting in alpha's reply queue must not be taken by this request.
    const stray = await (await cluster.spool('alpha')).delivery();
    const w = await stray.add({ id: 'stray', origin: 'beta', queue: 'reply.alpha', headers: { 'ferry.correlation-id': 'someone-else' }, committed: Date.now() });
    await w.write(Buffer.from('not yours'));
    await w.end();
    await stray.prepare();
    await stray.publish();

    // beta's responder: one take, upper-cases the request, replies to the requester.
    const responder = spawn(process.execPath, [FERRY_BIN, 'take', 'prices', '--wait', '60', '--exec',
      `tr a-z A-Z | node ${FERRY_BIN} send "$FERRY_REPLY_TO" --to "$FERRY_ORIGIN" --correlation-id "$FERRY_CORRELATION_ID"`],
    { env: { ...process.env, FERRY_CONFIG: beta.config }, stdio: 'ignore' });
    const responded = new Promise<number | null>((r) => responder.on('exit', r));

    const file = join(alpha.dir, 'query.txt');
    writeFileSync(file, 'price of tea?');
    const { stdout } = await run(process.execPath, [FERRY_BIN, 'request', 'prices', file, '--wait', '60', '--config', alpha.config]);
    expect(stdout).toBe('PRICE OF TEA?');
    expect(await responded).toBe(0);
    expect(cluster.inboxNames('alpha', 'reply.alpha')).toHaveLength(1); // the stray reply is still there
  });

  it('times out with one sentence and exit 1 when no reply comes', async () => {
    const cluster = await makeCluster({ hosts: ['alpha', 'beta'] });
    const file = join(cluster.host('alpha').dir, 'q.txt');
    writeFileSync(file, 'anyone?');
    const err = await run(process.execPath, [FERRY_BIN, 'request', 'nobody-listens', file, '--wait', '1', '--config', cluster.host('alpha').config], { encoding: 'utf8' })
      .then(() => undefined, (e: { code: number; stderr: string }) => e);
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/^ferry: no reply with correlation id \S+ arrived in queue reply\.alpha within 1 s \(the request was sent\)\n$/);
  });
});
