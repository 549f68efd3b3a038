// Moved to helpers/run-cli.ts; this re-export stays only until cli.test.ts imports it from there.
export { cli, type CliRun } from "./helpers/run-cli.js";
