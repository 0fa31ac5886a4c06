/**
 * The value rules of core/v1 Events (./rules.ts), as a table: each bad Event must be
 * refused with causes naming exactly the fields that are wrong (and the reason kind),
 * and the Events recorders write (client-go's, podnet's agent's) must pass. Plus the
 * structural check (./schemas.ts): field names and JSON types.
 */
import { describe, expect, it } from 'vitest';
import type { CoreEvent } from '../../client/types.js';
import { EVENT_MESSAGE_MAX_BYTES, EVENT_REASON_MAX_BYTES, validate } from './rules.js';
import type { RuleContext } from './rules.js';
import { checkStructure } from './schemas.js';

/** An Event as podnet's agent records it about its Node (in "default", as kube does for Nodes). */
function good(over: Partial<CoreEvent> = {}): CoreEvent {
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: 'n1.1842d3c5a6b7c8d9', namespace: 'default' },
    involvedObject: { kind: 'Node', name: 'n1', uid: 'n1' },
    reason: 'NotOnLink',
    message: 'node n9 (203.0.113.9) is not on-link on eth0',
    type: 'Warning',
    count: 1,
    firstTimestamp: '2026-01-02T15:04:05Z',
    lastTimestamp: '2026-01-02T15:04:05Z',
    source: { component: 'podnet-agent', host: 'n1' },
    reportingComponent: 'podnet-agent',
    reportingInstance: 'n1',
    ...over,
  };
}

const causes = (ev: CoreEvent, ctx: RuleContext = { op: 'create' }) => validate('events', ev, ctx).causes.map((c) => `${c.field} ${c.reason}`).sort();

interface Bad {
  name: string;
  event: CoreEvent;
  old?: CoreEvent;
  /** `field reason` of every cause, sorted. */
  want: string[];
}

const bad: Bad[] = [
  { name: 'no involvedObject at all', event: good({ involvedObject: undefined as unknown as CoreEvent['involvedObject'] }), want: ['involvedObject.kind FieldValueRequired', 'involvedObject.name FieldValueRequired'] },
  { name: 'involvedObject without a name', event: good({ involvedObject: { kind: 'Node' } }), want: ['involvedObject.name FieldValueRequired'] },
  { name: 'involvedObject without a kind', event: good({ involvedObject: { name: 'n1' } }), want: ['involvedObject.kind FieldValueRequired'] },
  { name: 'no type', event: good({ type: undefined }), want: ['type FieldValueRequired'] },
  { name: 'type "Error"', event: good({ type: 'Error' as CoreEvent['type'] }), want: ['type FieldValueNotSupported'] },
  { name: 'type "warning" (case matters)', event: good({ type: 'warning' as CoreEvent['type'] }), want: ['type FieldValueNotSupported'] },
  { name: `reason of ${EVENT_REASON_MAX_BYTES + 1} bytes`, event: good({ reason: 'R'.repeat(EVENT_REASON_MAX_BYTES + 1) }), want: ['reason FieldValueTooLong'] },
  { name: 'reason of 65 two-byte characters (130 bytes)', event: good({ reason: 'é'.repeat(65) }), want: ['reason FieldValueTooLong'] },
  { name: `message of ${EVENT_MESSAGE_MAX_BYTES + 1} bytes`, event: good({ message: 'm'.repeat(EVENT_MESSAGE_MAX_BYTES + 1) }), want: ['message FieldValueTooLong'] },
  { name: 'count -1', event: good({ count: -1 }), want: ['count FieldValueInvalid'] },
  { name: 'series.count -1', event: good({ series: { count: -1, lastObservedTime: '2026-01-02T15:04:05.000000Z' } }), want: ['series.count FieldValueInvalid'] },
  { name: 'lastTimestamp "yesterday"', event: good({ lastTimestamp: 'yesterday' }), want: ['lastTimestamp FieldValueInvalid'] },
  { name: 'firstTimestamp without a zone', event: good({ firstTimestamp: '2026-01-02T15:04:05' }), want: ['firstTimestamp FieldValueInvalid'] },
  { name: 'eventTime not a MicroTime', event: good({ eventTime: '15:04' }), want: ['eventTime FieldValueInvalid'] },
  { name: 'a Node event outside "default"', event: good({ metadata: { name: 'n1.x', namespace: 'kube-system' } }), want: ['involvedObject.namespace FieldValueInvalid'] },
  { name: 'a Pod event in another namespace than the pod', event: good({ metadata: { name: 'p.x', namespace: 'default' }, involvedObject: { kind: 'Pod', namespace: 'team', name: 'p' } }), want: ['involvedObject.namespace FieldValueInvalid'] },
  { name: 'a name that is not a DNS subdomain', event: good({ metadata: { name: 'N1.ABC', namespace: 'default' } }), want: ['metadata.name FieldValueInvalid'] },
  {
    name: 'everything at once: one answer naming each field',
    event: good({ involvedObject: { kind: 'Node' }, type: 'Info' as CoreEvent['type'], reason: 'R'.repeat(200), count: -3 }),
    want: ['count FieldValueInvalid', 'involvedObject.name FieldValueRequired', 'reason FieldValueTooLong', 'type FieldValueNotSupported'],
  },
  { name: 'update: involvedObject moved to another Node', event: good({ involvedObject: { kind: 'Node', name: 'n2', uid: 'n1' } }), old: good(), want: ['involvedObject.name FieldValueInvalid'] },
  { name: 'update: involvedObject moved to another kind and uid', event: good({ involvedObject: { kind: 'Pod', namespace: 'default', name: 'n1', uid: 'x' } }), old: good(), want: ['involvedObject.kind FieldValueInvalid', 'involvedObject.namespace FieldValueInvalid', 'involvedObject.uid FieldValueInvalid'] },
];

describe('Event validation', () => {
  for (const c of bad) {
    it(`refuses ${c.name}`, () => {
      expect(causes(c.event, c.old ? { op: 'update', old: c.old } : { op: 'create' })).toEqual(c.want);
    });
  }

  it('says what is wrong in each message', () => {
    const msgs = validate('events', good({ involvedObject: { kind: 'Node' }, type: 'Info' as CoreEvent['type'], message: 'm'.repeat(5000) }), { op: 'create' }).causes.map((c) => `${c.field}: ${c.message}`);
    expect(msgs).toEqual([
      'involvedObject.name: Required value: the name of the object the event is about',
      'message: Too long: must have at most 4096 bytes',
      'type: Unsupported value: "Info": supported values: "Normal", "Warning"',
    ]);
  });

  it.each([
    ['a Warning about a Node', good()],
    ['a Normal event', good({ type: 'Normal', reason: 'TransportReady' })],
    ['a Node event with no namespace on the object or the event', good({ metadata: { name: 'n1.x' } })],
    ['a Pod event in the pod\'s namespace', good({ metadata: { name: 'p.x', namespace: 'team' }, involvedObject: { kind: 'Pod', namespace: 'team', name: 'p', fieldPath: 'spec.containers{app}' } })],
    ['count 0, no timestamps, no reason (legacy clients)', good({ count: 0, firstTimestamp: undefined, lastTimestamp: undefined, reason: undefined })],
    [`a reason of exactly ${EVENT_REASON_MAX_BYTES} bytes and a message of ${EVENT_MESSAGE_MAX_BYTES}`, good({ reason: 'R'.repeat(EVENT_REASON_MAX_BYTES), message: 'm'.repeat(EVENT_MESSAGE_MAX_BYTES) })],
    ['an events.k8s.io-style series', good({ series: { count: 4, lastObservedTime: '2026-01-02T15:04:05.123456Z' }, eventTime: '2026-01-02T15:04:05.000000Z', action: 'Route' })],
  ])('accepts %s', (_name, ev) => {
    expect(causes(ev)).toEqual([]);
  });

  it('accepts an update that counts another occurrence (count, lastTimestamp, message; involvedObject.resourceVersion may move)', () => {
    const old = good({ involvedObject: { kind: 'Node', name: 'n1', uid: 'n1', resourceVersion: '5' } });
    const next = good({ involvedObject: { kind: 'Node', name: 'n1', uid: 'n1', resourceVersion: '9' }, count: 2, lastTimestamp: '2026-01-02T15:05:05Z', message: 'again' });
    expect(causes(next, { op: 'update', old })).toEqual([]);
  });
});

describe('Event structure', () => {
  it('takes what client-go sends: eventTime null, empty reporting fields', () => {
    const r = checkStructure('events', { ...good(), eventTime: null, reportingComponent: '', reportingInstance: '', series: null, related: null }, true);
    expect(r.ok).toBe(true);
  });

  it.each([
    ['count as a string', { count: '2' }, 'count'],
    ['involvedObject as a string', { involvedObject: 'node/n1' }, 'involvedObject'],
    ['source.host as a number', { source: { component: 'x', host: 1 } }, 'source.host'],
  ])('refuses %s, naming the field', (_name, over, field) => {
    const r = checkStructure('events', { ...good(), ...over }, false);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues.map((i) => i.field)).toEqual([field]);
  });

  it('names an unknown field under Strict (a typo of involvedObject)', () => {
    const { involvedObject, ...rest } = good();
    const r = checkStructure('events', { ...rest, involvedObjekt: involvedObject }, true);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues).toMatchObject([{ field: 'involvedObjekt', unknownField: true }]);
  });
});
