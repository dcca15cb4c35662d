/**
 * Prometheus metrics (ASYA_METRICS_ADDR): a registry of what the runtime alone knows (how each
 * message ended in Python, restarts, the Python process's memory, readiness) and the HTTP endpoint
 * that serves it at /metrics. What the sidecar measures itself (receive/send, queue transport,
 * round trip to the runtime) is not repeated: see docs/observing.md.
 *
 * The supervisor does not know this module: it reports through SupervisorEvents, and with metrics
 * off no observer is installed, so a message costs nothing extra.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsAddress } from '../config.js';
import { ErrorCode, ExitCode, FatalError } from '../errors.js';
import type { Logger } from '../logger.js';
import { residentBytes } from '../proc-memory.js';
import type { MetricUpdate } from '../worker/channel.js';
import type { MessageOutcome, SupervisorEvents } from '../worker/supervisor.js';

const PREFIX = 'asya_runtime_';
/** From 1 ms to 5 min: echo handlers and model inference alike. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const OUTCOMES: MessageOutcome[] = ['ok', ...Object.values(ErrorCode)];

/** What the metrics read at scrape time rather than being told. */
export interface MetricsSources {
  queued(): number;
  /** The Python processes that run the handler (one per loaded worker). */
  pythonPids(): number[];
  workersServing(): number;
}

export class RuntimeMetrics {
  readonly registry = new Registry();
  private readonly messages: Counter<'outcome'>;
  private readonly duration: Histogram<'outcome'>;
  private readonly restarts: Counter<'reason'>;
  private readonly loadSeconds: Gauge;
  private readonly ready: Gauge;
  /** Handed to the supervisor. */
  readonly events: SupervisorEvents;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.messages = new Counter({
      name: `${PREFIX}messages_total`,
      help: "Messages answered, by outcome: 'ok' or the error code of the answer",
      labelNames: ['outcome'],
      registers,
    });
    for (const outcome of OUTCOMES) this.messages.inc({ outcome }, 0); // every series exists from the start
    this.duration = new Histogram({
      name: `${PREFIX}handler_duration_seconds`,
      help: 'Time Python spent on a message: decoding, the handler, encoding the result',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.restarts = new Counter({
      name: `${PREFIX}worker_restarts_total`,
      help: "Python processes replaced after dying while serving, by reason: 'crash', 'timeout' (ASYA_HANDLER_TIMEOUT), 'corrupt' (wrote into the channel)",
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['crash', 'timeout', 'corrupt']) this.restarts.inc({ reason }, 0);
    this.loadSeconds = new Gauge({
      name: `${PREFIX}handler_load_seconds`,
      help: 'How long the last handler load took (import, and the class constructor)',
      registers,
    });
    this.ready = new Gauge({
      name: `${PREFIX}ready`,
      help: '1 while the ready file exists (the runtime accepts messages), else 0',
      registers,
    });
    new Gauge({
      name: `${PREFIX}queued_messages`,
      help: 'Messages received and not yet answered, the one in the handler included',
      registers,
      collect() {
        this.set(sources.queued());
      },
    });
    new Gauge({
      name: `${PREFIX}python_resident_memory_bytes`,
      help: 'Resident memory (RSS) of the Python process that runs the handler, summed over the ASYA_WORKERS processes; absent while none is loaded',
      registers,
      collect() {
        this.reset();
        const each = sources.pythonPids().map(residentBytes);
        if (each.some((rss) => rss !== null)) this.set(each.reduce<number>((sum, rss) => sum + (rss ?? 0), 0));
      },
    });
    new Gauge({
      name: `${PREFIX}workers_ready`,
      help: 'Python processes with the handler loaded and taking messages (ASYA_WORKERS when none is restarting)',
      registers,
      collect() {
        this.set(sources.workersServing());
      },
    });
    this.events = {
      message: (outcome, seconds) => {
        this.messages.inc({ outcome });
        this.duration.observe({ outcome }, seconds);
      },
      restart: (reason) => {
        if (reason !== 'stopped') this.restarts.inc({ reason });
      },
      loaded: (ready) => this.loadSeconds.set(ready.load_ms / 1000),
    };
  }

  /** A request the runtime answered before Python saw it (parse errors, oversized or unread frames). */
  refused(code: ErrorCode): void {
    this.messages.inc({ outcome: code });
  }

  setReady(up: boolean): void {
    this.ready.set(up ? 1 : 0);
  }

  /** The handlers' own metrics (context.metrics), by name: what each was first registered as. */
  private readonly handlerMetrics = new Map<string, HandlerMetric>();
  private readonly refusedNames = new Set<string>();

  /**
   * Updates from a handler's `context.metrics`, already checked by the shim (names, labels, values, one
   * kind and one set of labels per name within a process). Across processes (a pool, recycling) the first
   * registration of a name stands; a different one is dropped with one WARNING per name.
   */
  handler(updates: MetricUpdate[], log: Logger): void {
    for (const [kind, name, value, pairs] of updates) {
      const labelNames = pairs.map(([k]) => k);
      let metric = this.handlerMetrics.get(name);
      if (metric === undefined) {
        try {
          metric = createHandlerMetric(kind, name, labelNames, this.registry);
        } catch (err) {
          this.refuse(log, name, (err as Error).message);
          continue;
        }
        this.handlerMetrics.set(name, metric);
      }
      if (metric.kind !== kind || metric.labels !== labelNames.join(',')) {
        this.refuse(
          log,
          name,
          `it is a ${metric.kind} with labels (${metric.labels}), not a ${kind} with labels (${labelNames.join(',')})`,
        );
        continue;
      }
      const labels = Object.fromEntries(pairs);
      if (metric.kind === 'counter') metric.counter.inc(labels, value);
      else if (metric.kind === 'gauge') metric.gauge.set(labels, value);
      else metric.histogram.observe(labels, value);
    }
  }

  /** Every handler metric registered so far: name → [kind, label names] (for a new worker's init). */
  handlerKinds(): Record<string, [string, string[]]> {
    const kinds: Record<string, [string, string[]]> = {};
    for (const [name, metric] of this.handlerMetrics)
      kinds[name] = [metric.kind, metric.labels ? metric.labels.split(',') : []];
    return kinds;
  }

  private refuse(log: Logger, name: string, why: string): void {
    if (this.refusedNames.has(name)) return;
    this.refusedNames.add(name);
    log.warn({ metric: name }, `handler metric ${JSON.stringify(name)} dropped: ${why}`);
  }
}

type HandlerMetric = { labels: string } & (
  | { kind: 'counter'; counter: Counter<string> }
  | { kind: 'gauge'; gauge: Gauge<string> }
  | { kind: 'histogram'; histogram: Histogram<string> }
);

const HANDLER_PREFIX = 'asya_handler_';

function createHandlerMetric(
  kind: MetricUpdate[0],
  name: string,
  labelNames: string[],
  registry: Registry,
): HandlerMetric {
  const registers = [registry];
  const help = `From the handler: context.metrics.${kind === 'counter' ? 'inc' : kind === 'gauge' ? 'set' : 'observe'}(${JSON.stringify(name)})`;
  const labels = labelNames.join(',');
  if (kind === 'counter') {
    const full = `${HANDLER_PREFIX}${name.replace(/_total$/, '')}_total`;
    return { kind, labels, counter: new Counter({ name: full, help, labelNames, registers }) };
  }
  if (kind === 'gauge')
    return { kind, labels, gauge: new Gauge({ name: `${HANDLER_PREFIX}${name}`, help, labelNames, registers }) };
  // Prometheus's default buckets (prom-client's defaults are the same).
  return { kind, labels, histogram: new Histogram({ name: `${HANDLER_PREFIX}${name}`, help, labelNames, registers }) };
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serve `registry` at http://address/metrics. A failure to listen is fatal at startup (exit 2,
 * naming ASYA_METRICS_ADDR): an operator who asked for metrics must not silently get none.
 */
export function serveMetrics(
  registry: Registry,
  address: MetricsAddress,
  text: string,
  log: Logger,
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if ((req.method === 'GET' || req.method === 'HEAD') && url === '/metrics') {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'Content-Type': registry.contentType });
          res.end(req.method === 'HEAD' ? undefined : body);
        },
        (err: unknown) => {
          log.warn({ err }, 'metrics: collecting failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: metrics are at /metrics\n');
  });
  server.keepAliveTimeout = 65_000; // longer than a scrape interval: one connection per scraper
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        new FatalError(
          ExitCode.config,
          `cannot serve metrics on ASYA_METRICS_ADDR=${JSON.stringify(text)}: ${err.code ?? ''} ${err.message}`.replace(
            '  ',
            ' ',
          ),
        ),
      );
    });
    server.listen({ host: address.host, port: address.port }, () => {
      server.removeAllListeners('error');
      server.on('error', (err) => log.warn({ err }, 'metrics server error'));
      server.unref(); // never what keeps the runtime alive
      const port = (server.address() as AddressInfo).port;
      log.info({ address: `${address.host ?? ''}:${port}`, port, path: '/metrics' }, 'serving metrics');
      resolve({
        port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
