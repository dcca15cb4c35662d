import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CLI, type Finished, ROOT, runNode, TEST_VENV_PYTHON } from './helpers.js';

function run(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Finished> {
  return runNode(args, { ...opts, env: { ASYA_LOG_LEVEL: 'WARNING', ...opts.env } });
}

type Out = Array<{ route: { actors: string[]; current: number }; payload: Record<string, unknown> }>;

describe('examples', () => {
  it('the seeds pipeline: preprocessor -> classifier -> translator, each behind its own socket', async () => {
    const r = await run([path.join(ROOT, 'examples', 'pipeline', 'run.mjs'), '{"text": "Hello World"}']);
    assert.equal(r.code, 0, r.stderr);
    const steps = r.stdout.trim().split('\n');
    assert.deepEqual(
      steps.map((l) => l.split(':')[0]),
      ['in', 'preprocessor', 'classifier', 'translator', 'done'],
    );
    const done = JSON.parse(steps[4]!.slice('done:'.length)) as Record<string, unknown>;
    assert.deepEqual(done, {
      text: 'Hello World',
      cleaned_text: 'hello world',
      word_count: 2,
      category: 'greeting',
      confidence: 0.95,
      translation: 'Hola Mundo',
    });
  });

  it('a scikit-learn classifier trained at __init__, numpy results sent as JSON numbers', async () => {
    const r = await run(
      [
        CLI,
        'call',
        '--handler',
        'sentiment.SentimentClassifier.process',
        '--python',
        TEST_VENV_PYTHON,
        '--payload',
        '{"text": "great service, loved it"}',
        '--payload',
        '{"text": "rude staff, never again"}',
        '--payload',
        '{"no_text": 1}',
      ],
      { cwd: path.join(ROOT, 'examples', 'sklearn') },
    );
    assert.equal(r.code, 1, 'the third message is an error answer');
    const [good, bad, broken] = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Out);
    assert.equal(good![0]!.payload.label, 'positive');
    assert.equal(bad![0]!.payload.label, 'negative');
    const confidence = good![0]!.payload.confidence as number;
    assert.ok(typeof confidence === 'number' && confidence > 0.5 && confidence < 1, String(confidence));
    const probabilities = good![0]!.payload.probabilities as Record<string, number>;
    assert.ok(Math.abs(probabilities.positive! + probabilities.negative! - 1) < 1e-9);
    assert.match(JSON.stringify(broken), /"error":"processing_error".*payload needs a 'text' field/);
  });

  it('the envelope-mode judge inserts llm-refiner after itself for a weak answer only', async () => {
    const envelope = (answer: string) =>
      JSON.stringify({
        id: 'j',
        route: { actors: ['llm', 'judge', 'post'], current: 1 },
        payload: { question: 'what is the capital of france', llm_response: answer },
      });
    const r = await run(
      [
        CLI,
        'call',
        '--handler',
        'judge.LLMJudge.process',
        '--mode',
        'envelope',
        '--envelope',
        '--payload',
        envelope('paris'),
        '--payload',
        envelope('the capital of france is'),
      ],
      { cwd: path.join(ROOT, 'examples', 'router') },
    );
    assert.equal(r.code, 0, r.stderr);
    const [strong, weak] = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Out);
    assert.deepEqual(strong![0]!.route, { actors: ['llm', 'judge', 'post'], current: 2 });
    assert.equal(strong![0]!.payload.judge_score, 1);
    assert.deepEqual(weak![0]!.route, { actors: ['llm', 'judge', 'llm-refiner', 'post'], current: 2 });
    assert.equal(weak![0]!.payload.judge_score, 0);
  });
});
