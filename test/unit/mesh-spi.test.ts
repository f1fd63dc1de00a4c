import { describe, expect, it } from 'vitest';

import { allocateSpi, MAX_SPI_ATTEMPTS, MIN_SPI, spiCandidate, SpiExhaustedError, type SpiRequest } from '../../src/mesh/spi.js';

const request: SpiRequest = {
  meshUid: 'e0c1a2b3-0000-4000-8000-00000000000a',
  receiver: 'b',
  sender: 'a',
  family: 'inet',
  senderGeneration: 1,
  receiverGeneration: 1,
  senderBootId: 'boot-a',
  receiverBootId: 'boot-b',
};

describe('mesh SPI allocation', () => {
  it('is deterministic and takes the first candidate when nothing is taken', () => {
    expect(allocateSpi(request, () => false)).toBe(spiCandidate(request, 0));
    expect(allocateSpi({ ...request }, () => false)).toBe(allocateSpi(request, () => false));
  });

  it('never yields a reserved SPI (0-255) and stays in 32 bits', () => {
    for (let attempt = 0; attempt < 500; attempt++) {
      const spi = spiCandidate({ ...request, senderGeneration: attempt }, 0);
      expect(spi).toBeGreaterThanOrEqual(MIN_SPI);
      expect(spi).toBeLessThanOrEqual(0xffff_ffff);
    }
  });

  it('names each SA differently: every field of the request changes the candidate', () => {
    const variants: Partial<SpiRequest>[] = [
      { meshUid: 'other' },
      { receiver: 'c' },
      { sender: 'c' },
      { family: 'inet6' },
      { senderGeneration: 2 },
      { receiverGeneration: 2 },
      { senderBootId: 'boot-a-2' },
      { receiverBootId: 'boot-b-2' },
      { sender: 'b', receiver: 'a' },
    ];
    const base = spiCandidate(request, 0);
    for (const variant of variants) expect(spiCandidate({ ...request, ...variant }, 0), JSON.stringify(variant)).not.toBe(base);
  });

  it('on a collision takes the next candidate, and so on down the sequence', () => {
    const first = spiCandidate(request, 0);
    const second = spiCandidate(request, 1);
    const third = spiCandidate(request, 2);
    expect(allocateSpi(request, (spi) => spi === first)).toBe(second);
    expect(allocateSpi(request, (spi) => spi === first || spi === second)).toBe(third);
  });

  it('two SAs to one receiver whose first candidates collide get distinct SPIs once the first is recorded', () => {
    const taken = new Set<number>();
    const one = allocateSpi(request, (spi) => taken.has(spi));
    taken.add(one);
    // Force the second SA onto the first one's SPI: its own candidate 0 is made equal by taking
    // exactly what the first allocated, which is what a real hash collision looks like to it.
    const other: SpiRequest = { ...request, sender: 'c' };
    const collideFirst = (spi: number): boolean => taken.has(spi) || spi === spiCandidate(other, 0);
    const two = allocateSpi(other, collideFirst);
    expect(two).not.toBe(one);
    expect(two).toBe(spiCandidate(other, 1));
  });

  it('skips SPIs held by foreign SAs and released SPIs in quarantine alike (the caller folds them into taken)', () => {
    const foreign = spiCandidate(request, 0);
    const released = spiCandidate(request, 1);
    expect(allocateSpi(request, (spi) => spi === foreign || spi === released)).toBe(spiCandidate(request, 2));
  });

  it(`gives up with a clear error after ${MAX_SPI_ATTEMPTS} collisions`, () => {
    expect(() => allocateSpi(request, () => true)).toThrow(SpiExhaustedError);
    expect(() => allocateSpi(request, () => true)).toThrow(/no free SPI for the mesh SA a -> b \(inet, generations 1\/1\) after 64 candidates/);
  });
});
