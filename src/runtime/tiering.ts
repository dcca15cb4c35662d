/**
 * How soon V8 optimises the per-message path, set once the runtime is ready.
 *
 * V8 runs a function as bytecode until it has executed about 66 KB of it (`--interrupt-budget`), and
 * waits 500 more calls after any change in its type feedback (`--minimum-invocations-after-ic-update`)
 * before compiling it with TurboFan. A function that runs once per message (parsing the envelope,
 * building the answer, the socket's write) therefore ran as bytecode for the first several thousand
 * messages: on the benchmark VM the supervisor's main thread spent ~230 µs a small message for the
 * first thousand and ~110-150 µs until ~10 000, where it settles near 90, and the compiler threads
 * kept compiling through it. A pod is judged on those first minutes too (a fresh pod after every
 * rollout and every scale-up), and so is every benchmark that starts a fresh runtime.
 *
 * With a budget of 8 000 and 50 calls, the path is optimised within its first few hundred messages:
 * after a warm-up of 1 000 messages the runtime's CPU a message fell by 25-40 %, p99 by 60-75 % and p50
 * by 8-20 % (two A/Bs, docs/performance.md, "The per-message path's tiering"); once both builds have
 * compiled everything (15 000 messages) there is no difference. Not at startup: there, the same flags
 * made every one-off function hot, and cost ~75 ms of the time to ready and ~120 ms of CPU.
 *
 * Only for the V8 it was measured on: Node 20's V8 11. Node 24's V8 13 (the single executable's) has no
 * `--interrupt-budget` (setting it prints an error on stderr) and tiers up through Maglev first; the same
 * A/B there found no difference, so it keeps its own tiering. An operator's own
 * `node --interrupt-budget=...` or `--minimum-invocations-after-ic-update=...` wins.
 */
import v8 from 'node:v8';

/** V8's tiering flags for the per-message path, by V8 major version, with the values they get. */
const TIERING_FLAGS: Readonly<Record<number, Readonly<Record<string, number>>>> = {
  11: { 'interrupt-budget': 8000, 'minimum-invocations-after-ic-update': 50 },
};

/** The flags for this V8 (`process.versions.v8`), each unless `execArgv` sets it. */
export function tieringFlags(v8Version: string, execArgv: readonly string[]): string[] {
  const given = (name: string) => {
    const pattern = new RegExp(`^--${name.replace(/-/g, '[-_]')}(=|$)`);
    return execArgv.some((arg) => pattern.test(arg));
  };
  const flags = TIERING_FLAGS[Number.parseInt(v8Version, 10)] ?? {};
  return Object.entries(flags)
    .filter(([name]) => !given(name))
    .map(([name, value]) => `--${name}=${value}`);
}

/** Apply tieringFlags for the running V8. Returns the flags applied. */
export function optimiseHotPathEarly(execArgv: readonly string[]): string[] {
  const flags = tieringFlags(process.versions.v8, execArgv);
  for (const flag of flags) v8.setFlagsFromString(flag);
  return flags;
}
