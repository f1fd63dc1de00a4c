import { describe, expect, it } from 'vitest';
import { encodeState, decodeState } from '../../src/xfrm/state-codec.js';
import { fingerprintEntry } from '../../src/ownership/fingerprint.js';
import { sa } from '../support/entries.js';

describe('resuming an SA past its last outbound sequence number', () => {
  it('travels as XFRMA_REPLAY_VAL for a legacy window and as the ESN state otherwise', () => {
    const legacy = decodeState(encodeState({ ...sa({ replayWindow: 32 }), resumeSequence: 123_456n }));
    expect(legacy.observed?.replayState?.outboundSequence).toBe(123_456);
    const esn = decodeState(encodeState({ ...sa({ replayWindow: 128, esn: true }), resumeSequence: (5n << 32n) + 7n }));
    expect(esn.observed?.replayState).toMatchObject({ outboundSequence: 7, outboundSequenceHigh: 5 });
    const fresh = decodeState(encodeState(sa({ replayWindow: 32 })));
    expect(fresh.observed?.replayState?.outboundSequence ?? 0).toBe(0);
  });

  it('is not part of the configuration: the fingerprint ignores it', () => {
    const entry = sa();
    expect(fingerprintEntry('s', { ...entry, resumeSequence: 99n })).toBe(fingerprintEntry('s', entry));
  });
});
