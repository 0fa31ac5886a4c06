/**
 * The EventRecorder against a fake sink (an in-memory events store that answers like the
 * API: AlreadyExists, NotFound, injected failures): client-go's correlation (the same
 * object, type, reason and message counts up one Event; anything else is another), the
 * names and fields of what it writes, re-creation after the Event was deleted, bounded
 * memory (LRU), truncated messages, a bounded queue, and no failure ever reaching the caller.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ApiError } from '../client/errors.js';
import type { CoreEvent, Status } from '../client/types.js';
import { createLogger } from '../util/log.js';
import { EVENT_MESSAGE_MAX, EventRecorder, eventName, truncateMessage } from './events.js';
import type { EventRecord, EventSink } from './events.js';

const T0 = Date.parse('2031-05-01T12:00:00Z');

function apiError(code: number, reason: string, message: string): ApiError {
  const status: Status = { apiVersion: 'v1', kind: 'Status', metadata: {}, status: 'Failure', code, reason, message };
  return new ApiError(status);
}

/** An in-memory events store, with the calls it got and failures to inject. */
class FakeSink implements EventSink {
  readonly stored = new Map<string, CoreEvent>();
  readonly calls: string[] = [];
  /** The next calls fail with these, one each. */
  readonly failures: unknown[] = [];
  /** Called before each answer (to hold the API up). */
  gate: () => Promise<void> = () => Promise.resolve();

  async create(ev: CoreEvent): Promise<CoreEvent> {
    const key = `${ev.metadata.namespace}/${ev.metadata.name}`;
    this.calls.push(`create ${key}`);
    await this.gate();
    if (this.failures.length) throw this.failures.shift();
    if (this.stored.has(key)) throw apiError(409, 'AlreadyExists', `events "${ev.metadata.name}" already exists`);
    this.stored.set(key, structuredClone(ev));
    return ev;
  }

  async patch(namespace: string, name: string, patch: unknown, type: 'merge'): Promise<CoreEvent> {
    const key = `${namespace}/${name}`;
    this.calls.push(`patch ${key} ${type} ${JSON.stringify(patch)}`);
    await this.gate();
    if (this.failures.length) throw this.failures.shift();
    const cur = this.stored.get(key);
    if (!cur) throw apiError(404, 'NotFound', `events "${name}" not found`);
    const next = { ...cur, ...(patch as Partial<CoreEvent>) };
    this.stored.set(key, next);
    return next;
  }

  get events(): CoreEvent[] {
    return [...this.stored.values()];
  }
}

function setup(o: { maxKeys?: number; maxQueued?: number } = {}) {
  const sink = new FakeSink();
  const clock = { now: T0 };
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger({ level: 'warn', destination });
  const recorder = new EventRecorder({ sink, component: 'podnet-agent', host: 'n1', log, clock: () => clock.now, ...o });
  return { sink, clock, lines, recorder };
}

const node = { kind: 'Node', name: 'n1', uid: 'uid-n1' };
const notOnLink = (message = 'node n9 (203.0.113.9) is not on-link on eth0'): EventRecord => ({ involvedObject: node, type: 'Warning', reason: 'NotOnLink', message });

describe('EventRecorder', () => {
  it('creates an Event as client-go does: <name>.<16 hex> in "default" for a Node, count 1, source and reporting fields', async () => {
    const { sink, recorder } = setup();
    await recorder.record(notOnLink());
    expect(sink.events).toHaveLength(1);
    const ev = sink.events[0]!;
    expect(ev.metadata.name).toMatch(/^n1\.[0-9a-f]{16}$/);
    expect(ev).toEqual({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: ev.metadata.name, namespace: 'default' },
      involvedObject: { kind: 'Node', name: 'n1', uid: 'uid-n1' },
      reason: 'NotOnLink',
      message: 'node n9 (203.0.113.9) is not on-link on eth0',
      type: 'Warning',
      count: 1,
      firstTimestamp: '2031-05-01T12:00:00Z',
      lastTimestamp: '2031-05-01T12:00:00Z',
      source: { component: 'podnet-agent', host: 'n1' },
      reportingComponent: 'podnet-agent',
      reportingInstance: 'n1',
    });
    // The hex is the time in nanoseconds, as client-go's.
    expect(Number(BigInt(`0x${ev.metadata.name!.split('.')[1]}`) / 1_000_000n)).toBe(T0);
  });

  it('the same (object, type, reason, message) again: one Event, count and lastTimestamp move, by merge patch', async () => {
    const { sink, clock, recorder } = setup();
    await recorder.record(notOnLink());
    clock.now += 30_000;
    await recorder.record(notOnLink());
    clock.now += 30_000;
    await recorder.record(notOnLink());
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]).toMatchObject({ count: 3, firstTimestamp: '2031-05-01T12:00:00Z', lastTimestamp: '2031-05-01T12:01:00Z' });
    const name = sink.events[0]!.metadata.name!;
    expect(sink.calls).toEqual([`create default/${name}`, `patch default/${name} merge {"count":2,"lastTimestamp":"2031-05-01T12:00:30Z"}`, `patch default/${name} merge {"count":3,"lastTimestamp":"2031-05-01T12:01:00Z"}`]);
  });

  it.each([
    ['another message', { ...notOnLink(), message: 'node n8 (203.0.113.8) is not on-link on eth0' }],
    ['another reason', { ...notOnLink(), reason: 'NoAddress' }],
    ['another type', { ...notOnLink(), type: 'Normal' as const }],
    ['another object', { ...notOnLink(), involvedObject: { kind: 'Node', name: 'n2', uid: 'uid-n2' } }],
    ['another uid (the Node was made again)', { ...notOnLink(), involvedObject: { ...node, uid: 'uid-n1-new' } }],
    ['another kind', { ...notOnLink(), involvedObject: { kind: 'Pod', namespace: 'default', name: 'n1' } }],
  ])('%s: a second Event', async (_name, other) => {
    const { sink, recorder } = setup();
    await recorder.record(notOnLink());
    await recorder.record(other);
    expect(sink.events).toHaveLength(2);
    expect(sink.events.map((e) => e.count)).toEqual([1, 1]);
  });

  it('an Event about a namespaced object goes to its namespace', async () => {
    const { sink, recorder } = setup();
    await recorder.record({ involvedObject: { kind: 'Pod', namespace: 'team', name: 'web-0' }, type: 'Warning', reason: 'NoRoute', message: 'x' });
    expect(sink.events[0]!.metadata).toMatchObject({ namespace: 'team', name: expect.stringMatching(/^web-0\.[0-9a-f]{16}$/) });
  });

  it('records in order: back-to-back calls without awaiting still correlate (one create, then patches)', async () => {
    const { sink, recorder } = setup();
    void recorder.record(notOnLink());
    void recorder.record(notOnLink());
    void recorder.record(notOnLink());
    await recorder.flush();
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]!.count).toBe(3);
    expect(sink.calls.map((c) => c.split(' ')[0])).toEqual(['create', 'patch', 'patch']);
  });

  it('an Event deleted meanwhile (TTL) is created anew, count 1', async () => {
    const { sink, clock, recorder } = setup();
    await recorder.record(notOnLink());
    sink.stored.clear();
    clock.now += 2 * 3_600_000;
    await recorder.record(notOnLink());
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]).toMatchObject({ count: 1, firstTimestamp: '2031-05-01T14:00:00Z' });
    expect(sink.calls.map((c) => c.split(' ')[0])).toEqual(['create', 'patch', 'create']);
  });

  it('a name taken already: another name', async () => {
    const { sink, recorder } = setup();
    sink.failures.push(apiError(409, 'AlreadyExists', 'taken'));
    await recorder.record(notOnLink());
    expect(sink.events).toHaveLength(1);
    expect(sink.calls).toHaveLength(2);
  });

  it('never throws into the caller: a failed write is a warning in the log, and the next occurrence still counts', async () => {
    const { sink, lines, recorder } = setup();
    sink.failures.push(new Error('connect ECONNREFUSED 198.18.0.100:6443'));
    await expect(recorder.record(notOnLink())).resolves.toBeUndefined();
    expect(sink.events).toHaveLength(0);
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', msg: 'cannot record the event', object: 'Node/n1', reason: 'NotOnLink', type: 'Warning', err: 'connect ECONNREFUSED 198.18.0.100:6443' })]);
    // Nothing was stored: the next occurrence creates it.
    await recorder.record(notOnLink());
    expect(sink.events.map((e) => e.count)).toEqual([1]);
    // A failed count: the one after carries both occurrences.
    sink.failures.push(apiError(503, 'ServiceUnavailable', 'the storage backend is unavailable'));
    await recorder.record(notOnLink());
    await recorder.record(notOnLink());
    expect(sink.events.map((e) => e.count)).toEqual([3]);
    expect(lines).toHaveLength(2);
  });

  it('a refused Event (403, 422) is logged with the reason the API gave', async () => {
    const { sink, lines, recorder } = setup();
    sink.failures.push(apiError(403, 'Forbidden', 'node "n1" may only write Events about its own Node or pods bound to it (involvedObject is Node "n2")'));
    await recorder.record({ ...notOnLink(), involvedObject: { kind: 'Node', name: 'n2' } });
    expect(lines[0]).toMatchObject({ msg: 'cannot record the event', object: 'Node/n2', err: expect.stringContaining('may only write Events about its own Node') });
  });

  it('remembers at most maxKeys keys, forgetting the least recently used', async () => {
    const { sink, recorder } = setup({ maxKeys: 3 });
    const ev = (i: number) => ({ ...notOnLink(`problem ${i}`) });
    for (const i of [1, 2, 3]) await recorder.record(ev(i));
    await recorder.record(ev(1)); // 1 is now the most recent
    await recorder.record(ev(4)); // forgets 2
    expect(recorder.size).toBe(3);
    await recorder.record(ev(1)); // still known: counted
    await recorder.record(ev(2)); // forgotten: a new Event
    const byMessage = (m: string) => sink.events.filter((e) => e.message === m).map((e) => e.count);
    expect(byMessage('problem 1')).toEqual([3]);
    expect(byMessage('problem 2')).toEqual([1, 1]);
    expect(recorder.size).toBe(3);
  });

  it('stays within 256 keys by default, however many distinct events', async () => {
    const { recorder } = setup();
    for (let i = 0; i < 300; i++) await recorder.record(notOnLink(`problem ${i}`));
    expect(recorder.size).toBe(256);
  });

  it('cuts long messages to 1024 characters; the cut message still correlates', async () => {
    const { sink, recorder } = setup();
    const long = 'x'.repeat(5000);
    await recorder.record(notOnLink(long));
    await recorder.record(notOnLink(long));
    expect(sink.events).toHaveLength(1);
    expect(sink.events[0]!.message).toHaveLength(EVENT_MESSAGE_MAX);
    expect(sink.events[0]!.message!.endsWith('...')).toBe(true);
    expect(sink.events[0]!.count).toBe(2);
    expect(truncateMessage('short')).toBe('short');
  });

  it('drops (with a warning) what would queue beyond maxQueued behind a stuck API', async () => {
    const { sink, lines, recorder } = setup({ maxQueued: 2 });
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    sink.gate = () => held;
    const a = recorder.record(notOnLink('a'));
    const b = recorder.record(notOnLink('b'));
    await recorder.record(notOnLink('c')); // dropped at once
    expect(lines).toEqual([expect.objectContaining({ msg: 'too many events waiting for the API: event dropped', queued: 2 })]);
    release();
    await Promise.all([a, b]);
    expect(sink.events.map((e) => e.message).sort()).toEqual(['a', 'b']);
  });

  it('names fit a DNS subdomain even for the longest object names', () => {
    const n = eventName('a'.repeat(253), T0);
    expect(n.length).toBeLessThanOrEqual(253);
    expect(n).toMatch(/^a+\.[0-9a-f]{16}$/);
  });
});
