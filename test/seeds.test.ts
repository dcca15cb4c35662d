/** The seeds' handler examples, run as written (test/handlers/seed_examples.py) through the real runtime. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { asError, startRuntime } from './helpers.js';

async function through(handler: string, envelope: unknown, vars: Record<string, string> = {}): Promise<unknown> {
  const rt = await startRuntime({ handler: `seed_examples.${handler}`, env: vars });
  try {
    return await rt.send(envelope);
  } finally {
    await rt.stop();
  }
}

const route = { actors: ['preprocessor', 'classifier', 'translator'], current: 0 };

describe("seeds' examples", () => {
  it('enrich pattern: preprocessor then classifier (class loaded once, prints to the log)', async () => {
    const first = (await through('preprocess', { id: 'p1', route, payload: { text: 'Hello World' } })) as Array<{
      route: unknown;
      payload: unknown;
    }>;
    assert.deepEqual(first, [
      { route: { ...route, current: 1 }, payload: { text: 'Hello World', cleaned_text: 'hello world', word_count: 2 } },
    ]);
    const rt = await startRuntime({ handler: 'seed_examples.TextClassifier.process' });
    try {
      await rt.waitForLog((l) => l.msg === 'Model loaded from /models/default' && l.src === 'handler');
      const second = (await rt.send({ id: 'p1', ...first[0] })) as Array<{ route: unknown; payload: unknown }>;
      assert.deepEqual(second, [
        {
          route: { ...route, current: 2 },
          payload: {
            text: 'Hello World',
            cleaned_text: 'hello world',
            word_count: 2,
            category: 'greeting',
            confidence: 0.95,
          },
        },
      ]);
    } finally {
      await rt.stop();
    }
  });

  it('fan-out by lines and the abort pattern', async () => {
    const out = (await through('split_chunks', { route, payload: { text: 'a\nb' } })) as Array<{ payload: unknown }>;
    assert.deepEqual(
      out.map((e) => e.payload),
      [
        { text: 'a\nb', chunk_id: 0, chunk_text: 'a' },
        { text: 'a\nb', chunk_id: 1, chunk_text: 'b' },
      ],
    );
    assert.deepEqual(await through('skip_done', { route, payload: { already_processed: true } }), []);
  });

  it('LLM judge (envelope mode, class): a low score inserts llm-refiner and moves current on', async () => {
    const judgeRoute = { actors: ['preprocessor', 'llm-judge', 'postprocessor'], current: 1 };
    const low = (await through(
      'LLMJudge.process',
      { id: 'j1', route: judgeRoute, payload: { llm_response: 'meh' } },
      { ASYA_HANDLER_MODE: 'envelope' },
    )) as unknown[];
    assert.deepEqual(low, [
      {
        id: 'j1',
        route: { actors: ['preprocessor', 'llm-judge', 'llm-refiner', 'postprocessor'], current: 2 },
        payload: { llm_response: 'meh', judge_score: 0.3 },
      },
    ]);
    const high = (await through(
      'LLMJudge.process',
      { id: 'j2', route: judgeRoute, payload: { llm_response: 'good answer' } },
      { ASYA_HANDLER_MODE: 'envelope' },
    )) as unknown[];
    assert.deepEqual(high, [
      { id: 'j2', route: { ...judgeRoute, current: 2 }, payload: { llm_response: 'good answer', judge_score: 0.9 } },
    ]);
  });

  it('envelope-mode examples of seeds/000 and /002', async () => {
    const envMode = { ASYA_HANDLER_MODE: 'envelope' };
    assert.deepEqual(await through('envelope_mode', { route: { actors: ['a'], current: 0 }, payload: {} }, envMode), [
      { route: { actors: ['a', 'extra-step'], current: 1 }, payload: { processed: true } },
    ]);
    assert.deepEqual(
      await through(
        'dynamic_routing',
        { route: { actors: ['a', 'b'], current: 0 }, payload: { priority: 'high' } },
        envMode,
      ),
      [{ route: { actors: ['a', 'priority-handler', 'b'], current: 1 }, payload: { priority: 'high' } }],
    );
    assert.deepEqual(
      await through(
        'smart_router',
        { route: { actors: ['a'], current: 0 }, payload: { needs_validation: true } },
        envMode,
      ),
      [
        {
          route: { actors: ['a', 'validator', 'finalizer'], current: 0 },
          headers: {},
          payload: { processed: true, needs_validation: true },
        },
      ],
    );
    assert.deepEqual(
      await through('process_with_context', { route: { actors: ['a', 'b'], current: 1 }, payload: {} }, envMode),
      [{ route: { actors: ['a', 'b', 'cleanup'], current: 1 }, payload: { is_final_step: true } }],
    );
  });

  it('class handler of seeds/000 and the ValueError example of seeds/001', async () => {
    const out = (await through('Processor.process', { route, payload: { text: 'hello' } })) as Array<{
      payload: unknown;
    }>;
    assert.deepEqual(out[0]?.payload, { result: { category: 'greeting', score: 0.95 } });
    const e = asError(await through('validate_text', { route, payload: {} }));
    assert.equal(e.error, 'processing_error');
    assert.equal(e.details.message, 'Missing required field: text');
  });
});
