// The driver child of the exhaustive power-cut round (src/devtools/powercut-round.ts): node powercut-round-child.mjs <config.json> round|finish
import { roundChild } from '../dist/devtools/powercut-round.js';

await roundChild(process.argv[2], process.argv[3]);
