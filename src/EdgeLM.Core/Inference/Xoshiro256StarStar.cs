using System.Numerics;

namespace EdgeLM.Inference;

/// <summary>
/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64 as its authors recommend. Spelled out here rather
/// than using System.Random so that a seed yields the same token stream on every platform and .NET version.
/// </summary>
internal struct Xoshiro256StarStar
{
    private ulong _s0, _s1, _s2, _s3;

    public Xoshiro256StarStar(ulong seed)
    {
        // Four consecutive SplitMix64 outputs are never all zero, the one state xoshiro cannot leave.
        ulong splitMixState = seed;
        _s0 = SplitMix64(ref splitMixState);
        _s1 = SplitMix64(ref splitMixState);
        _s2 = SplitMix64(ref splitMixState);
        _s3 = SplitMix64(ref splitMixState);
    }

    /// <summary>Raw state, for checking against the reference implementation's published outputs.</summary>
    internal Xoshiro256StarStar(ulong s0, ulong s1, ulong s2, ulong s3)
    {
        if ((s0 | s1 | s2 | s3) == 0) throw new ArgumentException("xoshiro256** state must not be all zero");
        (_s0, _s1, _s2, _s3) = (s0, s1, s2, s3);
    }

    public ulong NextUInt64()
    {
        ulong result = BitOperations.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits, every value a multiple of 2^-53.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    internal static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
