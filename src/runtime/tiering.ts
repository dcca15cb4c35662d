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
 * With a budget of 8 000 and 50 calls, the path is optimised within the first ~1 000 messages: over
 * the first 10 000 messages the runtime's CPU a message fell from ~173 to ~145 µs, and after a
 * warm-up of 1 000, p50 from 169 to 131 µs (docs/performance.md, "The per-message path's
 * tiering"). Not at startup: there, the same flags made every one-off function hot, and cost ~75 ms
 * of the time to ready and ~120 ms of CPU.
 *
 * An operator's own `node --interrupt-budget=...` or `--minimum-invocations-after-ic-update=...` wins.
 */
import v8 from 'node:v8';

/** V8's tiering flags for the per-message path, with the values they get. */
export const TIERING_FLAGS: Readonly<Record<string, number>> = {
  'interrupt-budget': 8000,
  'minimum-invocations-after-ic-update': 50,
};

/** Apply TIERING_FLAGS, each unless `execArgv` sets it. Returns the flags applied. */
export function optimiseHotPathEarly(execArgv: readonly string[]): string[] {
  const given = (name: string) => {
    const pattern = new RegExp(`^--${name.replace(/-/g, '[-_]')}(=|$)`);
    return execArgv.some((arg) => pattern.test(arg));
  };
  const applied: string[] = [];
  for (const [name, value] of Object.entries(TIERING_FLAGS)) {
    if (given(name)) continue;
    const flag = `--${name}=${value}`;
    v8.setFlagsFromString(flag);
    applied.push(flag);
  }
  return applied;
}
