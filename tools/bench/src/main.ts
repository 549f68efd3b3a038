/**
 * Runs every benchmark (or those named on the command line: `bun src/main.ts wire transport`).
 * Each benchmark module prints its own table; figures are ratios against a baseline from the same run.
 */
const all = ["wire", "transport", "regions", "virtqueue", "backend", "inflight", "fallback"] as const;
const wanted = process.argv.slice(2);
for (const name of all) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  const mod = (await import(`./${name}.ts`)) as { run(): Promise<void> };
  console.log(`\n== ${name} ==`);
  await mod.run();
}
