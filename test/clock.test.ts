// The injectable wall clock (src/clock.ts): an offset read from FERRY_CLOCK_FILE, re-read as it changes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fileClock } from '../src/clock.js';

const HOUR = 3600_000;
const dirs: string[] = [];
function tempFile(content?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-clock-'));
  dirs.push(dir);
  const file = join(dir, 'offset');
  if (content !== undefined) writeFileSync(file, content);
  return file;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  vi.unstubAllEnvs();
  vi.resetModules();
});

/** |a − b| within a small tolerance for the time between two readings. */
const near = (a: number, b: number) => Math.abs(a - b) < 1000;

describe('fileClock', () => {
  it('is Date.now itself without a file', () => {
    expect(fileClock(undefined)).toBe(Date.now);
    expect(fileClock('')).toBe(Date.now);
  });

  it.each([
    ['7200000', 2 * HOUR],
    ['-7200000\n', -2 * HOUR],
    ['+5000', 5000],
    ['  0  ', 0],
    ['not a number', 0],
    ['1.5', 0],
    ['', 0],
  ])('reads the offset %j as %i ms', (text, offset) => {
    const clock = fileClock(tempFile(text));
    expect(near(clock(), Date.now() + offset)).toBe(true);
  });

  it('reads a missing file as offset 0', () => {
    const clock = fileClock(join(tmpdir(), 'ferry-clock-no-such-dir', 'offset'));
    expect(near(clock(), Date.now())).toBe(true);
  });

  it('follows the file as it changes, re-reading it at most every poll interval', async () => {
    const file = tempFile('0');
    const clock = fileClock(file, 50);
    expect(near(clock(), Date.now())).toBe(true);
    writeFileSync(file, String(2 * HOUR));
    expect(near(clock(), Date.now())).toBe(true); // within the poll interval: the old offset still
    await new Promise((r) => setTimeout(r, 60));
    expect(near(clock(), Date.now() + 2 * HOUR)).toBe(true);
    writeFileSync(file, String(-2 * HOUR));
    await new Promise((r) => setTimeout(r, 60));
    expect(near(clock(), Date.now() - 2 * HOUR)).toBe(true);
  });
});

describe('now', () => {
  it('is Date.now when FERRY_CLOCK_FILE is not set', async () => {
    vi.stubEnv('FERRY_CLOCK_FILE', undefined);
    vi.resetModules();
    const { now } = await import('../src/clock.js');
    expect(now).toBe(Date.now);
  });

  it('adds the offset in the file FERRY_CLOCK_FILE names', async () => {
    vi.stubEnv('FERRY_CLOCK_FILE', tempFile(String(-2 * HOUR)));
    vi.resetModules();
    const { now } = await import('../src/clock.js');
    expect(near(now(), Date.now() - 2 * HOUR)).toBe(true);
  });
});
