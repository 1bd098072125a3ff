#!/usr/bin/env node
// The installed entry point runs the compiled CLI (npm install runs the build through `prepare`).
import { main } from '../dist/cli/main.js';

await main(process.argv);
