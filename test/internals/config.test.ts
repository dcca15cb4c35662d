/** config.ts: every environment variable parsed once, by its schema; a bad value names the variable. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config.js';

describe('config', () => {
  it('defaults', () => {
    const r = parseConfig({ ASYA_HANDLER: 'm.f' });
    assert.ok(r.ok);
    assert.equal(r.config.socketPath, '/var/run/asya/asya-runtime.sock');
    assert.equal(r.config.readyFile, '/var/run/asya/runtime-ready');
    assert.equal(r.config.socketChmod, 0o666);
    assert.equal(r.config.mode, 'payload');
    assert.equal(r.config.validate, true);
    assert.equal(r.config.maxMessageSize, 64 * 1024 * 1024);
    assert.equal(r.config.handlerTimeoutMs, null);
    assert.equal(r.config.logLevel, 'info');
    assert.equal(r.config.logFormat, 'auto');
  });

  it('ASYA_LOG_FORMAT: json or pretty in any case; anything else is refused by name, and the FATAL lines keep the valid format', () => {
    for (const [value, format] of [
      ['json', 'json'],
      ['PRETTY', 'pretty'],
      [' Json ', 'json'],
      ['', 'auto'],
    ] as const) {
      const r = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_LOG_FORMAT: value });
      assert.ok(r.ok);
      assert.equal(r.config.logFormat, format, value);
    }
    const bad = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_LOG_FORMAT: 'xml' });
    assert.ok(!bad.ok);
    assert.deepEqual(bad.errors, ['ASYA_LOG_FORMAT="xml" is not valid: expected json, pretty (any case)']);
    assert.equal(bad.logFormat, 'auto');
    const other = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_LOG_FORMAT: 'json', ASYA_WORKERS: 'many' });
    assert.ok(!other.ok);
    assert.equal(other.logFormat, 'json');
  });

  it('parses every form', () => {
    const r = parseConfig({
      ASYA_HANDLER: 'a.b.C.m',
      ASYA_HANDLER_MODE: 'Envelope',
      ASYA_SOCKET_CHMOD: '660',
      ASYA_ENABLE_VALIDATION: 'FALSE',
      ASYA_INCLUDE_METADATA: '1',
      ASYA_HANDLER_TIMEOUT: '2.5',
      ASYA_LOG_LEVEL: 'warning',
      ASYA_SOCKET_PATH: '/tmp/x/app.sock',
    });
    assert.ok(r.ok);
    assert.equal(r.config.mode, 'envelope');
    assert.equal(r.config.socketChmod, 0o660);
    assert.equal(r.config.validate, false);
    assert.equal(r.config.includeMetadata, true);
    assert.equal(r.config.handlerTimeoutMs, 2500);
    assert.equal(r.config.logLevel, 'warn');
    assert.equal(r.config.readyFile, '/tmp/x/runtime-ready');
    assert.equal(
      parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_CHMOD: '' }).ok &&
        (parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_CHMOD: '' }) as { config: { socketChmod: unknown } }).config
          .socketChmod,
      null,
    );
  });

  it('legacy module forms', () => {
    const a = parseConfig({ ASYA_PROCESS_MODULE: 'my_app.handler:run' });
    const b = parseConfig({ ASYA_PROCESS_MODULE: 'my_app.handler' });
    assert.ok(a.ok && b.ok);
    assert.equal(a.config.handler, 'my_app.handler.run');
    assert.equal(b.config.handler, 'my_app.handler.process');
  });

  it('a socket name that is a directory or the ready file is refused', () => {
    for (const name of ['.', '..', 'runtime-ready']) {
      const r = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_NAME: name });
      assert.ok(!r.ok && r.errors.some((e) => e.startsWith(`ASYA_SOCKET_NAME=${JSON.stringify(name)}`)), name);
    }
    const p = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_SOCKET_PATH: '/tmp/x/runtime-ready' });
    assert.ok(!p.ok && p.errors.some((e) => e.startsWith('ASYA_SOCKET_PATH=')));
  });

  it('errors name the variable and value', () => {
    const r = parseConfig({ ASYA_HANDLER: 'm.f', ASYA_MAX_MESSAGE_SIZE: '1e9', ASYA_LOG_LEVEL: 'x' });
    assert.ok(!r.ok);
    assert.ok(r.errors.some((e) => e.startsWith('ASYA_MAX_MESSAGE_SIZE="1e9"')));
    assert.ok(r.errors.some((e) => e.startsWith('ASYA_LOG_LEVEL="x"')));
  });

  it('the worker and kill-grace variables, and a bad value names the variable', () => {
    const ok = parseConfig({
      ASYA_HANDLER: 'm.f',
      ASYA_WORKER_MAX_MEMORY: '1.5GiB',
      ASYA_WORKER_MAX_MESSAGES: '1000',
      ASYA_HANDLER_KILL_GRACE: '2.5',
    });
    assert.ok(ok.ok);
    assert.equal(ok.config.workerMaxMemory, 1.5 * 1024 ** 3);
    assert.equal(ok.config.workerMaxMessages, 1000);
    assert.equal(ok.config.handlerKillGraceMs, 2500);
    const defaults = parseConfig({ ASYA_HANDLER: 'm.f' });
    assert.ok(defaults.ok);
    assert.equal(defaults.config.handlerKillGraceMs, 5000, 'default kill grace');
    for (const [name, value] of [
      ['ASYA_WORKER_MAX_MEMORY', '2GB'],
      ['ASYA_WORKER_MAX_MESSAGES', '0'],
      ['ASYA_HANDLER_KILL_GRACE', '-1'],
      ['ASYA_HANDLER_ARGS', 'null'],
    ]) {
      const bad = parseConfig({ ASYA_HANDLER: 'm.f', [name!]: value });
      assert.ok(!bad.ok);
      assert.match(
        bad.errors.join('\n'),
        new RegExp(`${name}=${JSON.stringify(value).replace(/[.]/g, '\\.')} is not valid`),
      );
    }
    assert.equal(parseConfig({ ASYA_HANDLER: 'm.f', ASYA_WORKER_MAX_MEMORY: '2Gi' }).ok, true);
  });
});
