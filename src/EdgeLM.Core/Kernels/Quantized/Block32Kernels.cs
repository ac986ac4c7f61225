using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Kernels.Quantized;

/// <summary>Q8_0 weights x Q8_0 activations (ggml_vec_dot_q8_0_q8_0).</summary>
public unsafe struct Q8_0Kernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q8_0;
    public static ActivationFormat Activation => ActivationFormat.Q8_0;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        Block32Dot<Q8_0Format>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => Block32Dot<Q8_0Format>.DotScalar(w, x, k);
}

/// <summary>Q4_0 weights x Q8_0 activations (ggml_vec_dot_q4_0_q8_0).</summary>
public unsafe struct Q4_0Kernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q4_0;
    public static ActivationFormat Activation => ActivationFormat.Q8_0;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        Block32Dot<Q4_0Format>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => Block32Dot<Q4_0Format>.DotScalar(w, x, k);
}

/// <summary>Q4_1 weights x Q8_1 activations (ggml_vec_dot_q4_1_q8_1).</summary>
public unsafe struct Q4_1Kernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q4_1;
    public static ActivationFormat Activation => ActivationFormat.Q8_1;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        Block32Dot<Q4_1Format>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => Block32Dot<Q4_1Format>.DotScalar(w, x, k);
}

/// <summary>Q5_0 weights x Q8_0 activations (ggml_vec_dot_q5_0_q8_0).</summary>
public unsafe struct Q5_0Kernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q5_0;
    public static ActivationFormat Activation => ActivationFormat.Q8_0;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        Block32Dot<Q5_0Format>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => Block32Dot<Q5_0Format>.DotScalar(w, x, k);
}

/// <summary>Q5_1 weights x Q8_1 activations (ggml_vec_dot_q5_1_q8_1).</summary>
public unsafe struct Q5_1Kernel : IWeightKernel
{
    public static GgmlType WeightType => GgmlType.Q5_1;
    public static ActivationFormat Activation => ActivationFormat.Q8_1;
    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride) =>
        Block32Dot<Q5_1Format>.Tile(w, wStride, rows, x, xStride, cols, k, y, yStride);
    public static float DotScalar(byte* w, byte* x, int k) => Block32Dot<Q5_1Format>.DotScalar(w, x, k);
}

/// <summary>
/// How one 32-element weight block turns into 32 integer levels. Formats without a min have signed levels
/// (value = d * level) and pair with Q8_0 activations; formats with a min (Q4_1, Q5_1) have unsigned levels
/// (value = d * level + m) and pair with Q8_1, whose s = d * sum(q) carries the m term.
/// </summary>
internal unsafe interface IBlock32Format
{
    static abstract int BlockBytes { get; }
    static abstract bool HasMin { get; }
    /// <summary>All 32 levels in element order (AVX2 only).</summary>
    static abstract Vector256<sbyte> Levels256(byte* block);
    /// <summary>Elements 0..15 and 16..31.</summary>
    static abstract void Levels128(byte* block, out Vector128<sbyte> low, out Vector128<sbyte> high);
    static abstract int Level(byte* block, int j);
    /// <summary>
    /// Formats whose levels are (u - Offset) with u in 0..31: the offset, else -1 (Q8_0). Lets decode multiply u
    /// directly (u is a valid unsigned maddubs operand) and subtract Offset * sum(x) once per activation block,
    /// instead of taking |level| and moving its sign onto x for every row.
    /// </summary>
    static abstract int UnsignedOffset { get; }
    /// <summary>u for all 32 elements (AVX2 only; only when UnsignedOffset >= 0).</summary>
    static abstract Vector256<byte> Unsigned256(byte* block);
}

internal unsafe struct Q8_0Format : IBlock32Format
{
    public static int BlockBytes => 34;
    public static bool HasMin => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Levels256(byte* block) => Vector256.Load((sbyte*)(block + 2));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        low = Vector128.Load((sbyte*)(block + 2));
        high = Vector128.Load((sbyte*)(block + 18));
    }
    public static int Level(byte* block, int j) => (sbyte)block[2 + j];
    public static int UnsignedOffset => -1;
    public static Vector256<byte> Unsigned256(byte* block) => throw new NotSupportedException("Q8_0 levels are signed");
}

internal unsafe struct Q4_0Format : IBlock32Format
{
    public static int BlockBytes => 18;
    public static bool HasMin => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Levels256(byte* block) => Block32Bits.Nibbles256(block + 2) - Vector256.Create((sbyte)8);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        Block32Bits.Nibbles128(block + 2, out low, out high);
        low -= Vector128.Create((sbyte)8);
        high -= Vector128.Create((sbyte)8);
    }
    public static int Level(byte* block, int j) => (j < 16 ? block[2 + j] & 0x0F : block[2 + j - 16] >> 4) - 8;
    public static int UnsignedOffset => 8;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unsigned256(byte* block) => Block32Bits.Nibbles256(block + 2).AsByte();
}

internal unsafe struct Q4_1Format : IBlock32Format
{
    public static int BlockBytes => 20;
    public static bool HasMin => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Levels256(byte* block) => Block32Bits.Nibbles256(block + 4);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, out Vector128<sbyte> low, out Vector128<sbyte> high) =>
        Block32Bits.Nibbles128(block + 4, out low, out high);
    public static int Level(byte* block, int j) => j < 16 ? block[4 + j] & 0x0F : block[4 + j - 16] >> 4;
    public static int UnsignedOffset => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unsigned256(byte* block) => Levels256(block).AsByte();
}

internal unsafe struct Q5_0Format : IBlock32Format
{
    public static int BlockBytes => 22;
    public static bool HasMin => false;
    // As ggml: level = nibble | (fifth bit clear ? 0xF0 : 0), which is (nibble | bit << 4) - 16 as a signed byte.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Levels256(byte* block)
    {
        var set = Block32Bits.BitsToBytes256(*(uint*)(block + 2));
        return Block32Bits.Nibbles256(block + 6) | Avx2.AndNot(set, Vector256.Create((byte)0xF0)).AsSByte();
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        Block32Bits.Nibbles128(block + 6, out low, out high);
        Block32Bits.BitsToBytes128(*(uint*)(block + 2), out var setLow, out var setHigh);
        low |= Vector128.AndNot(Vector128.Create((byte)0xF0), setLow).AsSByte();
        high |= Vector128.AndNot(Vector128.Create((byte)0xF0), setHigh).AsSByte();
    }
    public static int Level(byte* block, int j)
    {
        uint qh = *(uint*)(block + 2);
        int nibble = j < 16 ? block[6 + j] & 0x0F : block[6 + j - 16] >> 4;
        return (nibble | (int)((qh >> j) & 1) << 4) - 16;
    }
    public static int UnsignedOffset => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unsigned256(byte* block)
    {
        var set = Block32Bits.BitsToBytes256(*(uint*)(block + 2));
        return Block32Bits.Nibbles256(block + 6).AsByte() | (set & Vector256.Create((byte)0x10));
    }
}

internal unsafe struct Q5_1Format : IBlock32Format
{
    public static int BlockBytes => 24;
    public static bool HasMin => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Levels256(byte* block)
    {
        var set = Block32Bits.BitsToBytes256(*(uint*)(block + 4));
        return Block32Bits.Nibbles256(block + 8) | (set & Vector256.Create((byte)0x10)).AsSByte();
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Levels128(byte* block, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        Block32Bits.Nibbles128(block + 8, out low, out high);
        Block32Bits.BitsToBytes128(*(uint*)(block + 4), out var setLow, out var setHigh);
        low |= (setLow & Vector128.Create((byte)0x10)).AsSByte();
        high |= (setHigh & Vector128.Create((byte)0x10)).AsSByte();
    }
    public static int Level(byte* block, int j)
    {
        uint qh = *(uint*)(block + 4);
        int nibble = j < 16 ? block[8 + j] & 0x0F : block[8 + j - 16] >> 4;
        return nibble | (int)((qh >> j) & 1) << 4;
    }
    public static int UnsignedOffset => 0;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Unsigned256(byte* block) => Levels256(block).AsByte();
}

internal static unsafe class Block32Bits
{
    /// <summary>16 packed bytes to 32 nibbles: low nibbles are elements 0..15, high nibbles 16..31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<sbyte> Nibbles256(byte* qs)
    {
        // A 16-bit shift (bytes have no shift instruction) and one 256-bit mask: 4 instructions instead of 7.
        var packed = Vector128.Load(qs);
        var both = Vector256.Create(packed, Sse2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte());
        return (both & Vector256.Create((byte)0x0F)).AsSByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Nibbles128(byte* qs, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        var packed = Vector128.Load(qs);
        var mask = Vector128.Create((byte)0x0F);
        low = (packed & mask).AsSByte();
        high = (Vector128.ShiftRightLogical(packed, 4) & mask).AsSByte();
    }

    /// <summary>Bit j of bits to byte j = 0xFF (set) or 0 (ggml's bytes_from_bits_32). AVX2 only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> BitsToBytes256(uint bits)
    {
        var spread = Avx2.Shuffle(Vector256.Create(bits).AsByte(), Vector256.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        // Every bit except bit (j mod 8) set in byte j: the OR is all ones exactly when that bit is set.
        var others = Vector256.Create(0x7fbfdfeff7fbfdfeUL).AsByte();
        return Vector256.Equals(spread | others, Vector256<byte>.AllBitsSet);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void BitsToBytes128(uint bits, out Vector128<byte> low, out Vector128<byte> high)
    {
        var source = Vector128.Create(bits).AsByte();
        var select = Vector128.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        var lowBytes = Vector128.Shuffle(source, Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        var highBytes = Vector128.Shuffle(source, Vector128.Create((byte)2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        low = Vector128.Equals(lowBytes & select, select);
        high = Vector128.Equals(highBytes & select, select);
    }

    /// <summary>
    /// IEEE half to float for block scales, by table as ggml does without F16C (.NET exposes no F16C intrinsic):
    /// one load instead of ~10 scalar operations per scale, which dominated the per-block cost. The few hundred
    /// distinct scales a model uses stay in L1/L2. Exact: the table is filled by the reference conversion.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p) => HalfTable[*(ushort*)p];

    private static readonly float* HalfTable = CreateHalfTable();

    private static float* CreateHalfTable()
    {
        // Lives for the process (256 KB), like ggml_table_f32_f16.
        var table = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int h = 0; h < 65536; h++) table[h] = HalfPrecision.FromF16((ushort)h);
        return table;
    }
}

/// <summary>Integer multiply-add of 32 weight levels with 32 activation bytes into 8 int lanes (AVX2 path).</summary>
internal interface IMul256
{
    /// <summary>a: levels made non-negative (|w|, or w itself when unsigned); b: activations with w's sign applied.</summary>
    static abstract Vector256<int> Dot(Vector256<byte> a, Vector256<sbyte> b);
}

internal struct Avx2Mul : IMul256
{
    // maddubs pairs cannot saturate: |a| <= 128 and |b| <= 127 (activations never reach -128), 2 * 128 * 127 < 32767.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> a, Vector256<sbyte> b) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(a, b), Vector256.Create((short)1));
}

internal struct VnniMul : IMul256
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<byte> a, Vector256<sbyte> b) => AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, a, b);
}

/// <summary>Dot products of 16 signed bytes into 4 int lanes (Vector128 path).</summary>
internal interface IDot128
{
    static abstract Vector128<int> Dot(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b);
}

internal struct PortableDot : IDot128
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b)
    {
        var (a0, a1) = Vector128.Widen(a);
        var (b0, b1) = Vector128.Widen(b);
        var (p0, p1) = Vector128.Widen(a0 * b0); // |products| <= 128 * 128: fit in short
        var (p2, p3) = Vector128.Widen(a1 * b1);
        return acc + ((p0 + p1) + (p2 + p3));
    }
}

internal struct DpDot : IDot128
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<int> Dot(Vector128<int> acc, Vector128<sbyte> a, Vector128<sbyte> b) => Dp.DotProduct(acc, a, b);
}

/// <summary>
/// The dot-product tiles of every 32-element block format. Each output is one accumulation over its blocks in order
/// (one FMA per block into 8 or 4 float lanes, one horizontal sum at the end), the same whether it is computed
/// alone or in a tile of four activation columns, so results do not depend on how the caller tiles.
/// </summary>
internal static unsafe class Block32Dot<TFormat> where TFormat : unmanaged, IBlock32Format
{
    private const int BlockSize = 32;
    private static int ActivationBytes => TFormat.HasMin ? 36 : 34;
    private static int ActivationLevels => TFormat.HasMin ? 4 : 2;

    public static void Tile(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
    {
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            if (AvxVnni.IsSupported) TileAvx2<VnniMul>(w, wStride, rows, x, xStride, cols, k, y, yStride);
            else TileAvx2<Avx2Mul>(w, wStride, rows, x, xStride, cols, k, y, yStride);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            if (Dp.IsSupported) Tile128<DpDot>(w, wStride, rows, x, xStride, cols, k, y, yStride);
            else Tile128<PortableDot>(w, wStride, rows, x, xStride, cols, k, y, yStride);
        }
        else TileScalar(w, wStride, rows, x, xStride, cols, k, y, yStride);
    }

    public static float DotScalar(byte* w, byte* x, int k)
    {
        float sum = 0;
        int blocks = k / BlockSize;
        for (int b = 0; b < blocks; b++)
        {
            byte* wb = w + b * TFormat.BlockBytes, xb = x + b * ActivationBytes;
            sbyte* xq = (sbyte*)(xb + ActivationLevels);
            int isum = 0;
            for (int j = 0; j < BlockSize; j++) isum += TFormat.Level(wb, j) * xq[j];
            float d = HalfPrecision.FromF16(*(ushort*)wb) * HalfPrecision.FromF16(*(ushort*)xb);
            sum += d * isum;
            if (TFormat.HasMin) sum += HalfPrecision.FromF16(*(ushort*)(wb + 2)) * HalfPrecision.FromF16(*(ushort*)(xb + 2));
        }
        return sum;
    }

    internal static void TileScalar(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
    {
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                y[c * yStride + r] = DotScalar(w + r * wStride, x + c * xStride, k);
    }

    // Every AVX2 path accumulates an output's blocks in order into one 8-lane float accumulator, so Row1, Row2 and
    // Row4 give the same bits. (Even/odd accumulators per output were tried: Row4 then needs 8 accumulators,
    // spilled, and prefill lost 20%; Row2 already has two independent chains.)
    internal static void TileAvx2<TMul>(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
        where TMul : IMul256
    {
        int blocks = k / BlockSize;
        int r = 0;
        if (cols < 4 && TFormat.UnsignedOffset >= 0)
        {
            // Decode: two weight rows per pass share each activation block's load, scale and offset sums. Not for
            // Q8_0: there it shares little, and two interleaved 952-byte row streams measured 35% slower from DRAM.
            for (; r + 2 <= rows; r += 2)
            {
                byte* wr = w + r * wStride;
                for (int c = 0; c < cols; c++) Row2Avx2<TMul>(wr, wStride, x + c * xStride, blocks, y + c * yStride + r);
            }
        }
        for (; r < rows; r++)
        {
            byte* wr = w + r * wStride;
            int c = 0;
            for (; c + 4 <= cols; c += 4) Row4Avx2<TMul>(wr, x + c * xStride, xStride, blocks, y + c * yStride + r, yStride);
            for (; c < cols; c++) y[c * yStride + r] = Row1Avx2<TMul>(wr, x + c * xStride, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> BlockDot<TMul>(Vector256<byte> magnitude, Vector256<sbyte> levels, Vector256<sbyte> xq) where TMul : IMul256 =>
        TMul.Dot(magnitude, TFormat.HasMin ? xq : Avx2.Sign(xq, levels));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> ActivationLevels256(byte* xb) => Vector256.Load((sbyte*)(xb + ActivationLevels));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Magnitude(Vector256<sbyte> levels) => TFormat.HasMin ? levels.AsByte() : Avx2.Abs(levels);

    /// <summary>acc + d_w * d_x * (integer dot of one weight block with one activation block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step<TMul>(byte* wb, byte* xb, Vector256<float> acc) where TMul : IMul256
    {
        var levels = TFormat.Levels256(wb);
        var isum = BlockDot<TMul>(Magnitude(levels), levels, ActivationLevels256(xb));
        return Fma.MultiplyAdd(Vector256.Create(Block32Bits.Half(wb) * Block32Bits.Half(xb)), Avx.ConvertToVector256Single(isum), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Mins(byte* wb, byte* xb) => Block32Bits.Half(wb + 2) * Block32Bits.Half(xb + 2);

    private static float Row1Avx2<TMul>(byte* w, byte* x, int blocks) where TMul : IMul256
    {
        Vector256<float> acc = default;
        float mins = 0;
        byte* wb = w, xb = x;
        for (int b = 0; b < blocks; b++, wb += TFormat.BlockBytes, xb += ActivationBytes)
        {
            acc = Step<TMul>(wb, xb, acc);
            if (TFormat.HasMin) mins += Mins(wb, xb);
        }
        return Vector256.Sum(acc) + mins;
    }

    /// <summary>Rows r and r+1 against one activation row: y[0], y[1]; bitwise equal to two Row1 calls.</summary>
    private static void Row2Avx2<TMul>(byte* w, long wStride, byte* x, int blocks, float* y) where TMul : IMul256
    {
        Vector256<float> acc0 = default, acc1 = default;
        float mins0 = 0, mins1 = 0;
        byte* wb = w, xb = x;
        for (int b = 0; b < blocks; b++, wb += TFormat.BlockBytes, xb += ActivationBytes)
        {
            var xq = ActivationLevels256(xb);
            float xd = Block32Bits.Half(xb);
            if (TFormat.UnsignedOffset >= 0)
            {
                // Offset * (sum of x in each lane's 4 elements), as the same lane layout the dot produces.
                var offsetSums = TFormat.UnsignedOffset == 0 ? default : TMul.Dot(Vector256.Create((byte)TFormat.UnsignedOffset), xq);
                acc0 = StepUnsigned<TMul>(wb, xq, offsetSums, xd, acc0);
                acc1 = StepUnsigned<TMul>(wb + wStride, xq, offsetSums, xd, acc1);
            }
            else
            {
                acc0 = Step2<TMul>(wb, xq, xd, acc0);
                acc1 = Step2<TMul>(wb + wStride, xq, xd, acc1);
            }
            if (TFormat.HasMin) { mins0 += Mins(wb, xb); mins1 += Mins(wb + wStride, xb); }
        }
        y[0] = Vector256.Sum(acc0) + mins0;
        y[1] = Vector256.Sum(acc1) + mins1;
    }

    /// <summary>The integer dot is the same exact integer as the signed path's: sum(u x) - Offset sum(x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> StepUnsigned<TMul>(byte* wb, Vector256<sbyte> xq, Vector256<int> offsetSums, float xd, Vector256<float> acc)
        where TMul : IMul256
    {
        var isum = TMul.Dot(TFormat.Unsigned256(wb), xq);
        if (TFormat.UnsignedOffset != 0) isum -= offsetSums;
        return Fma.MultiplyAdd(Vector256.Create(Block32Bits.Half(wb) * xd), Avx.ConvertToVector256Single(isum), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step2<TMul>(byte* wb, Vector256<sbyte> xq, float xd, Vector256<float> acc) where TMul : IMul256
    {
        var levels = TFormat.Levels256(wb);
        var isum = BlockDot<TMul>(Magnitude(levels), levels, xq);
        return Fma.MultiplyAdd(Vector256.Create(Block32Bits.Half(wb) * xd), Avx.ConvertToVector256Single(isum), acc);
    }

    /// <summary>One weight row against four activation rows (prefill), the weight block decoded once for all four.</summary>
    private static void Row4Avx2<TMul>(byte* w, byte* x, long xStride, int blocks, float* y, long yStride) where TMul : IMul256
    {
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        float mins0 = 0, mins1 = 0, mins2 = 0, mins3 = 0;
        byte* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        byte* wb = w;
        int xo = 0;
        for (int b = 0; b < blocks; b++, wb += TFormat.BlockBytes, xo += ActivationBytes)
        {
            var levels = TFormat.Levels256(wb);
            var magnitude = Magnitude(levels);
            float wd = Block32Bits.Half(wb);
            acc0 = Column<TMul>(magnitude, levels, wd, x0 + xo, acc0);
            acc1 = Column<TMul>(magnitude, levels, wd, x1 + xo, acc1);
            acc2 = Column<TMul>(magnitude, levels, wd, x2 + xo, acc2);
            acc3 = Column<TMul>(magnitude, levels, wd, x3 + xo, acc3);
            if (TFormat.HasMin)
            {
                mins0 += Mins(wb, x0 + xo);
                mins1 += Mins(wb, x1 + xo);
                mins2 += Mins(wb, x2 + xo);
                mins3 += Mins(wb, x3 + xo);
            }
        }
        y[0] = Vector256.Sum(acc0) + mins0;
        y[yStride] = Vector256.Sum(acc1) + mins1;
        y[2 * yStride] = Vector256.Sum(acc2) + mins2;
        y[3 * yStride] = Vector256.Sum(acc3) + mins3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Column<TMul>(Vector256<byte> magnitude, Vector256<sbyte> levels, float wd, byte* xb, Vector256<float> acc)
        where TMul : IMul256 =>
        Fma.MultiplyAdd(Vector256.Create(wd * Block32Bits.Half(xb)), Avx.ConvertToVector256Single(BlockDot<TMul>(magnitude, levels, ActivationLevels256(xb))), acc);

    internal static void Tile128<TDot>(byte* w, long wStride, int rows, byte* x, long xStride, int cols, int k, float* y, long yStride)
        where TDot : IDot128
    {
        int blocks = k / BlockSize;
        for (int r = 0; r < rows; r++)
        {
            byte* wr = w + r * wStride;
            int c = 0;
            for (; c + 4 <= cols; c += 4) Row4x128<TDot>(wr, x + c * xStride, xStride, blocks, y + c * yStride + r, yStride);
            for (; c < cols; c++) y[c * yStride + r] = Row1x128<TDot>(wr, x + c * xStride, blocks);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> BlockDot128<TDot>(Vector128<sbyte> low, Vector128<sbyte> high, byte* xb) where TDot : IDot128
    {
        sbyte* xq = (sbyte*)(xb + ActivationLevels);
        var isum = TDot.Dot(TDot.Dot(Vector128<int>.Zero, low, Vector128.Load(xq)), high, Vector128.Load(xq + 16));
        return Vector128.ConvertToSingle(isum);
    }

    private static float Row1x128<TDot>(byte* w, byte* x, int blocks) where TDot : IDot128
    {
        var acc = Vector128<float>.Zero;
        float mins = 0;
        for (int b = 0; b < blocks; b++)
        {
            byte* wb = w + b * TFormat.BlockBytes, xb = x + b * ActivationBytes;
            TFormat.Levels128(wb, out var low, out var high);
            float wd = Block32Bits.Half(wb);
            acc = Vector128.MultiplyAddEstimate(Vector128.Create(wd * Block32Bits.Half(xb)), BlockDot128<TDot>(low, high, xb), acc);
            if (TFormat.HasMin) mins += Block32Bits.Half(wb + 2) * Block32Bits.Half(xb + 2);
        }
        return Vector128.Sum(acc) + mins;
    }

    private static void Row4x128<TDot>(byte* w, byte* x, long xStride, int blocks, float* y, long yStride) where TDot : IDot128
    {
        Vector128<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        float mins0 = 0, mins1 = 0, mins2 = 0, mins3 = 0;
        byte* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        for (int b = 0; b < blocks; b++)
        {
            byte* wb = w + b * TFormat.BlockBytes;
            int xo = b * ActivationBytes;
            TFormat.Levels128(wb, out var low, out var high);
            float wd = Block32Bits.Half(wb);
            acc0 = Vector128.MultiplyAddEstimate(Vector128.Create(wd * Block32Bits.Half(x0 + xo)), BlockDot128<TDot>(low, high, x0 + xo), acc0);
            acc1 = Vector128.MultiplyAddEstimate(Vector128.Create(wd * Block32Bits.Half(x1 + xo)), BlockDot128<TDot>(low, high, x1 + xo), acc1);
            acc2 = Vector128.MultiplyAddEstimate(Vector128.Create(wd * Block32Bits.Half(x2 + xo)), BlockDot128<TDot>(low, high, x2 + xo), acc2);
            acc3 = Vector128.MultiplyAddEstimate(Vector128.Create(wd * Block32Bits.Half(x3 + xo)), BlockDot128<TDot>(low, high, x3 + xo), acc3);
            if (TFormat.HasMin)
            {
                float wm = Block32Bits.Half(wb + 2);
                mins0 += wm * Block32Bits.Half(x0 + xo + 2);
                mins1 += wm * Block32Bits.Half(x1 + xo + 2);
                mins2 += wm * Block32Bits.Half(x2 + xo + 2);
                mins3 += wm * Block32Bits.Half(x3 + xo + 2);
            }
        }
        y[0] = Vector128.Sum(acc0) + mins0;
        y[yStride] = Vector128.Sum(acc1) + mins1;
        y[2 * yStride] = Vector128.Sum(acc2) + mins2;
        y[3 * yStride] = Vector128.Sum(acc3) + mins3;
    }
}
