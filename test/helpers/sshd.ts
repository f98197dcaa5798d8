// The tests' private sshd: the same harness the demo, chaos run and benchmark use (src/devtools).
export * from '../../src/devtools/private-sshd.js';
