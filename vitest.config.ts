import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Crash and end-to-end tests spawn daemons and sshd; two workers match the two cores.
    maxWorkers: 2,
  },
});
