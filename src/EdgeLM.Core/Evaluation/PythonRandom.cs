namespace EdgeLM.Evaluation;

/// <summary>
/// CPython's random.Random (MT19937, seeded with init_by_array as random.seed(int) does) with the exact
/// getrandbits / _randbelow / sample algorithms, so few-shot examples are drawn as lm-eval draws them.
/// </summary>
public sealed class PythonRandom
{
    private const int N = 624, M = 397;
    private readonly uint[] _mt = new uint[N];
    private int _index;

    public PythonRandom(ulong seed)
    {
        // random.seed(int): the absolute value split into 32-bit words, least significant first.
        var key = new List<uint>();
        do { key.Add((uint)seed); seed >>= 32; } while (seed != 0);
        InitByArray([.. key]);
    }

    private void InitGenrand(uint s)
    {
        _mt[0] = s;
        for (int i = 1; i < N; i++) _mt[i] = 1812433253u * (_mt[i - 1] ^ (_mt[i - 1] >> 30)) + (uint)i;
        _index = N;
    }

    private void InitByArray(uint[] key)
    {
        InitGenrand(19650218u);
        int i = 1, j = 0;
        for (int k = Math.Max(N, key.Length); k > 0; k--)
        {
            _mt[i] = (_mt[i] ^ ((_mt[i - 1] ^ (_mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint)j;
            i++; j++;
            if (i >= N) { _mt[0] = _mt[N - 1]; i = 1; }
            if (j >= key.Length) j = 0;
        }
        for (int k = N - 1; k > 0; k--)
        {
            _mt[i] = (_mt[i] ^ ((_mt[i - 1] ^ (_mt[i - 1] >> 30)) * 1566083941u)) - (uint)i;
            i++;
            if (i >= N) { _mt[0] = _mt[N - 1]; i = 1; }
        }
        _mt[0] = 0x80000000u;
    }

    public uint NextUInt32()
    {
        if (_index >= N)
        {
            for (int k = 0; k < N; k++)
            {
                uint y = (_mt[k] & 0x80000000u) | (_mt[(k + 1) % N] & 0x7fffffffu);
                _mt[k] = _mt[(k + M) % N] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908b0dfu : 0u);
            }
            _index = 0;
        }
        uint x = _mt[_index++];
        x ^= x >> 11;
        x ^= (x << 7) & 0x9d2c5680u;
        x ^= (x << 15) & 0xefc60000u;
        x ^= x >> 18;
        return x;
    }

    /// <summary>random.getrandbits(k) for 1 &lt;= k &lt;= 32.</summary>
    public uint GetRandBits(int k)
    {
        if (k is < 1 or > 32) throw new ArgumentOutOfRangeException(nameof(k), "1..32 bits");
        return NextUInt32() >> (32 - k);
    }

    /// <summary>random._randbelow(n): rejection sampling on n.bit_length() bits.</summary>
    public int RandBelow(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), "n must be positive");
        int bits = 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)n);
        uint r = GetRandBits(bits);
        while (r >= (uint)n) r = GetRandBits(bits);
        return (int)r;
    }

    /// <summary>random.sample(range(n), k): the indices it picks, in its order.</summary>
    public int[] Sample(int n, int k)
    {
        if (k < 0 || k > n) throw new ArgumentException($"cannot sample {k} of {n} items");
        var result = new int[k];
        int setSize = 21;
        if (k > 5) setSize += 1 << (2 * (int)Math.Ceiling(Math.Log(k * 3, 4)));
        if (n <= setSize)
        {
            var pool = Enumerable.Range(0, n).ToArray();
            for (int i = 0; i < k; i++)
            {
                int j = RandBelow(n - i);
                result[i] = pool[j];
                pool[j] = pool[n - i - 1];
            }
        }
        else
        {
            var selected = new HashSet<int>();
            for (int i = 0; i < k; i++)
            {
                int j = RandBelow(n);
                while (!selected.Add(j)) j = RandBelow(n);
                result[i] = j;
            }
        }
        return result;
    }
}
