/**
 * `--env-file FILE`: variables for `call` and `check` from a file, as `docker run --env-file` and
 * dotenv read them, so a team's `.env` works as it is. A line that is none of these is an error
 * naming the file and line: a silently skipped variable is a handler configured wrongly.
 *
 *   KEY=value            value trimmed, a ` #` starts a comment
 *   export KEY=value     the shell's form
 *   KEY="a\nb"           double quotes: \n \t \" \\ escapes, may span lines
 *   KEY='raw'            single quotes: as written
 *   KEY                  the variable as the environment has it (skipped when unset)
 *   # comment, blank lines
 */
import fs from 'node:fs';
import { UsageError } from './messages.js';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\' };

export function readEnvFile(file: string): Record<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --env-file ${file}: ${(err as Error).message}`);
  }
  return parseEnvFile(text, file);
}

export function parseEnvFile(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const vars = new Map<string, string>(); // a Map: `__proto__=x` is a variable like any other
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const where = `--env-file ${file}, line ${i + 1}`;
    const line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) {
      // A bare name takes the variable from the environment, as docker --env-file does (unset: skipped).
      const bare = line.replace(/^export\s+/, '');
      if (!NAME.test(bare)) throw new UsageError(`${where}: expected KEY=VALUE or KEY, got ${JSON.stringify(line)}`);
      const inherited = env[bare];
      if (inherited !== undefined) vars.set(bare, inherited);
      continue;
    }
    const name = line
      .slice(0, eq)
      .replace(/^export\s+/, '')
      .trim();
    if (!NAME.test(name)) throw new UsageError(`${where}: ${JSON.stringify(name)} is not a variable name`);
    let rest = line.slice(eq + 1).trim();
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      // A quoted value ends at its closing quote, on this line or a later one.
      let value = '';
      let j = 1;
      for (;;) {
        if (j >= rest.length) {
          if (i + 1 >= lines.length) throw new UsageError(`${where}: the ${quote} quote is never closed`);
          rest += `\n${lines[++i]}`;
          continue;
        }
        const c = rest[j] as string;
        if (c === quote) break;
        if (quote === '"' && c === '\\' && j + 1 < rest.length) {
          const next = rest[j + 1] as string;
          value += ESCAPES[next] ?? `\\${next}`;
          j += 2;
          continue;
        }
        value += c;
        j++;
      }
      const after = rest.slice(j + 1).trim();
      if (after !== '' && !after.startsWith('#'))
        throw new UsageError(`${where}: unexpected ${JSON.stringify(after)} after the quoted value of ${name}`);
      vars.set(name, value);
    } else {
      const comment = rest.search(/\s#/);
      vars.set(name, (comment < 0 ? rest : rest.slice(0, comment)).trim());
    }
  }
  for (const [name, value] of vars) {
    // What the kernel refuses in an environment (execve fails with E2BIG, or the value is cut at a NUL):
    // said here, naming the variable, rather than as a Python that failed to start.
    if (value.includes('\0'))
      throw new UsageError(`--env-file ${file}: ${name} holds a NUL byte, which no environment variable can`);
    if (Buffer.byteLength(`${name}=${value}`) >= MAX_VARIABLE_BYTES)
      throw new UsageError(
        `--env-file ${file}: ${name} is ${Buffer.byteLength(value)} bytes; an environment variable holds less than ${MAX_VARIABLE_BYTES} (Linux's MAX_ARG_STRLEN): pass it in a file`,
      );
  }
  return Object.fromEntries(vars);
}

/** Linux's MAX_ARG_STRLEN: the most one `NAME=value` string of a new process's environment may hold. */
const MAX_VARIABLE_BYTES = 128 * 1024;
