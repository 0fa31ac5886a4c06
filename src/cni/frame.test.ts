import { describe, expect, it } from 'vitest';
import { CniError } from './errors.js';
import { FrameReader, FrameTooLargeError, decodeRequest, decodeResponse, encodeFrame } from './frame.js';

describe('frames', () => {
  it('encodeFrame: 4-byte big-endian length, then UTF-8 JSON', () => {
    const f = encodeFrame({ exit: 0, stdout: 'é' });
    const json = '{"exit":0,"stdout":"é"}';
    expect(f.readUInt32BE(0)).toBe(Buffer.byteLength(json));
    expect(f.subarray(4).toString('utf8')).toBe(json);
  });

  it('FrameReader reassembles a frame split at every byte boundary', () => {
    const frame = encodeFrame({ v: 1, env: { CNI_COMMAND: 'ADD' }, stdin: '{"a":"ü"}' });
    for (let cut = 1; cut < frame.length; cut++) {
      const r = new FrameReader();
      expect(r.push(frame.subarray(0, cut))).toBeUndefined();
      const payload = r.push(frame.subarray(cut));
      expect(payload?.toString('utf8')).toBe(frame.subarray(4).toString('utf8'));
    }
  });

  it('FrameReader ignores bytes after the frame and handles byte-by-byte delivery', () => {
    const frame = Buffer.concat([encodeFrame({ exit: 1, stdout: 'x' }), Buffer.from('trailing')]);
    const r = new FrameReader();
    let payload: Buffer | undefined;
    for (let i = 0; i < frame.length && !payload; i++) payload = r.push(frame.subarray(i, i + 1));
    expect(decodeResponse(payload!)).toEqual({ exit: 1, stdout: 'x' });
  });

  it('FrameReader refuses a frame over its limit from the header alone', () => {
    const r = new FrameReader(100);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(101);
    expect(() => r.push(head)).toThrow(FrameTooLargeError);
    const empty = new FrameReader(100);
    expect(empty.push(Buffer.from([0, 0, 0, 0]))?.length).toBe(0);
  });

  it('decodeRequest checks the shape and the format version', () => {
    const ok = Buffer.from(JSON.stringify({ v: 1, env: { CNI_COMMAND: 'DEL' }, stdin: '' }));
    expect(decodeRequest(ok)).toEqual({ env: { CNI_COMMAND: 'DEL' }, stdin: '' });
    expect(decodeRequest(Buffer.from('{"env":{},"stdin":"x"}'))).toEqual({ env: {}, stdin: 'x' });
    const bad: [string, RegExp][] = [
      ['nope', /not JSON/],
      ['[]', /not a JSON object/],
      ['{"v":2,"env":{},"stdin":""}', /format version 2, this agent speaks 1/],
      ['{"env":[],"stdin":""}', /"env" is not an object/],
      ['{"env":{"CNI_COMMAND":1},"stdin":""}', /env\.CNI_COMMAND is not a string/],
      ['{"env":{}}', /"stdin" is not a string/],
    ];
    for (const [text, msg] of bad) {
      let err: unknown;
      try {
        decodeRequest(Buffer.from(text));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(6);
      expect((err as CniError).message).toMatch(msg);
    }
  });

  it('decodeResponse checks exit and stdout', () => {
    expect(() => decodeResponse(Buffer.from('{"exit":256,"stdout":""}'))).toThrow(/malformed/);
    expect(() => decodeResponse(Buffer.from('{"exit":0}'))).toThrow(/malformed/);
  });
});
