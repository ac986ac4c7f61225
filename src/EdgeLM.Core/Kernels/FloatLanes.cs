using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace EdgeLM.Kernels;

/// <summary>
/// One SIMD width of float lanes, so each float kernel is written once and specialized per width by the JIT
/// (generic methods over structs compile to straight-line code without calls).
/// </summary>
internal unsafe interface IFloatLanes<TSelf> where TSelf : struct, IFloatLanes<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract TSelf Load(float* p);
    static abstract void Store(TSelf v, float* p);
    /// <summary>Count halves, exact for finite values; ±inf/NaN come out finite with magnitude in [2^16, 2^17).</summary>
    static abstract TSelf LoadHalfFinite(ushort* p);
    /// <summary>Count halves, bitwise equal to <see cref="RowConvert.HalfToSingleScalar"/> for every pattern.</summary>
    static abstract TSelf LoadHalf(ushort* p);
    static abstract TSelf LoadBFloat16(ushort* p);
    static abstract TSelf MultiplyAdd(TSelf a, TSelf b, TSelf addend);
    /// <summary>a * b + addend rounded once on every machine (software where the CPU has no FMA), unlike
    /// <see cref="MultiplyAdd"/>: the panel kernels promise the bits of a scalar fused chain.</summary>
    static abstract TSelf FusedMultiplyAdd(TSelf a, TSelf b, TSelf addend);
    static abstract TSelf Broadcast(float value);
    static abstract TSelf Add(TSelf a, TSelf b);
    static abstract TSelf Max(TSelf a, TSelf b);
    static abstract TSelf Min(TSelf a, TSelf b);
    /// <summary>Whether a value tracked by <see cref="Max"/>/<see cref="Min"/> came from a half inf/NaN.</summary>
    static abstract bool OutsideHalfRange(TSelf max, TSelf min);
    static abstract float Sum(TSelf v);
}

/// <summary>Half to float with integer operations (.NET exposes no F16C), shared by every width.</summary>
internal static class HalfBits
{
    // The sign-extended half shifted left by 13 has the sign in bit 31 (its copies in bits 30..28 are masked off)
    // and exponent+mantissa where a float's go; scaling by 2^112 rebiases the exponent and normalizes subnormals
    // exactly. Finite halves are below 2^16, inf/NaN land in [2^16, 2^17).
    public const int FiniteMask = unchecked((int)0x8FFFE000);
    public const float TwoPow112 = 5.192296858534828e33f;
    public const float SpecialBound = 65536f;
    public const uint InfNanExponent = 0x7F800000;
    public const uint QuietBit = 0x00400000; // as (float)Half gives: NaNs come out quiet

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Finite(Vector128<int> s) => ((s << 13) & Vector128.Create(FiniteMask)).AsSingle() * Vector128.Create(TwoPow112);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Finite(Vector256<int> s) => ((s << 13) & Vector256.Create(FiniteMask)).AsSingle() * Vector256.Create(TwoPow112);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Finite(Vector512<int> s) => ((s << 13) & Vector512.Create(FiniteMask)).AsSingle() * Vector512.Create(TwoPow112);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exact(Vector128<float> r)
    {
        var magnitude = Vector128.Abs(r);
        var special = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(SpecialBound)).AsUInt32() & Vector128.Create(InfNanExponent);
        var nan = Vector128.GreaterThan(magnitude, Vector128.Create(SpecialBound)).AsUInt32() & Vector128.Create(QuietBit);
        return (r.AsUInt32() | special | nan).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exact(Vector256<float> r)
    {
        var magnitude = Vector256.Abs(r);
        var special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(SpecialBound)).AsUInt32() & Vector256.Create(InfNanExponent);
        var nan = Vector256.GreaterThan(magnitude, Vector256.Create(SpecialBound)).AsUInt32() & Vector256.Create(QuietBit);
        return (r.AsUInt32() | special | nan).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exact(Vector512<float> r)
    {
        var magnitude = Vector512.Abs(r);
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(SpecialBound)).AsUInt32() & Vector512.Create(InfNanExponent);
        var nan = Vector512.GreaterThan(magnitude, Vector512.Create(SpecialBound)).AsUInt32() & Vector512.Create(QuietBit);
        return (r.AsUInt32() | special | nan).AsSingle();
    }
}

internal readonly unsafe struct Lanes128 : IFloatLanes<Lanes128>
{
    private readonly Vector128<float> _v;
    private Lanes128(Vector128<float> v) => _v = v;

    public static int Count => 4;
    public static Lanes128 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 Load(float* p) => new(Vector128.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Lanes128 v, float* p) => v._v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> Widen(ushort* p) =>
        Sse41.IsSupported ? Sse41.ConvertToVector128Int32((short*)p) : Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(long*)p).AsInt16());

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 LoadHalfFinite(ushort* p) => new(HalfBits.Finite(Widen(p)));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 LoadHalf(ushort* p) => new(HalfBits.Exact(HalfBits.Finite(Widen(p))));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 LoadBFloat16(ushort* p) => new((Widen(p) << 16).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 MultiplyAdd(Lanes128 a, Lanes128 b, Lanes128 addend) => new(Fma.IsSupported ? Fma.MultiplyAdd(a._v, b._v, addend._v) : Vector128.MultiplyAddEstimate(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 FusedMultiplyAdd(Lanes128 a, Lanes128 b, Lanes128 addend) => new(Fma.IsSupported ? Fma.MultiplyAdd(a._v, b._v, addend._v) : Vector128.FusedMultiplyAdd(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 Broadcast(float value) => new(Vector128.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 Add(Lanes128 a, Lanes128 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 Max(Lanes128 a, Lanes128 b) => new(Vector128.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes128 Min(Lanes128 a, Lanes128 b) => new(Vector128.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool OutsideHalfRange(Lanes128 max, Lanes128 min) =>
        Vector128.GreaterThanOrEqualAny(max._v, Vector128.Create(HalfBits.SpecialBound)) || Vector128.LessThanOrEqualAny(min._v, Vector128.Create(-HalfBits.SpecialBound));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Lanes128 v) => Vector128.Sum(v._v);
}

internal readonly unsafe struct Lanes256 : IFloatLanes<Lanes256>
{
    private readonly Vector256<float> _v;
    private Lanes256(Vector256<float> v) => _v = v;

    public static int Count => 8;
    public static Lanes256 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Lanes256 v, float* p) => v._v.Store(p);

    // vpmovsxwd straight from memory: one instruction per 8 halves.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Widen(ushort* p) =>
        Avx2.IsSupported ? Avx2.ConvertToVector256Int32((short*)p) : Vector256.WidenLower(Vector128.Load((short*)p).ToVector256Unsafe());

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 LoadHalfFinite(ushort* p) => new(HalfBits.Finite(Widen(p)));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 LoadHalf(ushort* p) => new(HalfBits.Exact(HalfBits.Finite(Widen(p))));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 LoadBFloat16(ushort* p) => new((Widen(p) << 16).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] // Fma.MultiplyAdd rather than MultiplyAddEstimate (the same fused result): with the estimate the JIT picks the
    // 213 form and copies the accumulator back, six extra moves per step of the 16-register 4x3 tile.
    public static Lanes256 MultiplyAdd(Lanes256 a, Lanes256 b, Lanes256 addend) => new(Fma.IsSupported ? Fma.MultiplyAdd(a._v, b._v, addend._v) : Vector256.MultiplyAddEstimate(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 FusedMultiplyAdd(Lanes256 a, Lanes256 b, Lanes256 addend) => new(Fma.IsSupported ? Fma.MultiplyAdd(a._v, b._v, addend._v) : Vector256.FusedMultiplyAdd(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 Broadcast(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 Add(Lanes256 a, Lanes256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 Max(Lanes256 a, Lanes256 b) => new(Vector256.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes256 Min(Lanes256 a, Lanes256 b) => new(Vector256.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool OutsideHalfRange(Lanes256 max, Lanes256 min) =>
        Vector256.GreaterThanOrEqualAny(max._v, Vector256.Create(HalfBits.SpecialBound)) || Vector256.LessThanOrEqualAny(min._v, Vector256.Create(-HalfBits.SpecialBound));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Lanes256 v) => Vector256.Sum(v._v);
}

internal readonly unsafe struct Lanes512 : IFloatLanes<Lanes512>
{
    private readonly Vector512<float> _v;
    private Lanes512(Vector512<float> v) => _v = v;

    public static int Count => 16;
    public static Lanes512 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Lanes512 v, float* p) => v._v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Widen(ushort* p) =>
        Avx512F.IsSupported ? Avx512F.ConvertToVector512Int32(Vector256.Load((short*)p)) : Vector512.WidenLower(Vector256.Load((short*)p).ToVector512Unsafe());

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 LoadHalfFinite(ushort* p) => new(HalfBits.Finite(Widen(p)));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 LoadHalf(ushort* p) => new(HalfBits.Exact(HalfBits.Finite(Widen(p))));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 LoadBFloat16(ushort* p) => new((Widen(p) << 16).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 MultiplyAdd(Lanes512 a, Lanes512 b, Lanes512 addend) => new(Avx512F.IsSupported ? Avx512F.FusedMultiplyAdd(a._v, b._v, addend._v) : Vector512.MultiplyAddEstimate(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 FusedMultiplyAdd(Lanes512 a, Lanes512 b, Lanes512 addend) => new(Avx512F.IsSupported ? Avx512F.FusedMultiplyAdd(a._v, b._v, addend._v) : Vector512.FusedMultiplyAdd(a._v, b._v, addend._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 Broadcast(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 Add(Lanes512 a, Lanes512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 Max(Lanes512 a, Lanes512 b) => new(Vector512.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Lanes512 Min(Lanes512 a, Lanes512 b) => new(Vector512.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool OutsideHalfRange(Lanes512 max, Lanes512 min) =>
        Vector512.GreaterThanOrEqualAny(max._v, Vector512.Create(HalfBits.SpecialBound)) || Vector512.LessThanOrEqualAny(min._v, Vector512.Create(-HalfBits.SpecialBound));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Lanes512 v) => Vector512.Sum(v._v);
}

/// <summary>How a weight row stores its values: loads a vector of them as floats, or one value.</summary>
internal unsafe interface IRowFormat
{
    /// <summary>Loads may return finite stand-ins for inf/NaN, which the kernel must check (F16 only).</summary>
    static abstract bool NeedsRangeCheck { get; }
    static abstract TLanes Load<TLanes>(byte* row, int i) where TLanes : struct, IFloatLanes<TLanes>;
    static abstract float Scalar(byte* row, int i);
}

internal readonly unsafe struct F32Rows : IRowFormat
{
    public static bool NeedsRangeCheck => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static TLanes Load<TLanes>(byte* row, int i) where TLanes : struct, IFloatLanes<TLanes> => TLanes.Load((float*)row + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scalar(byte* row, int i) => ((float*)row)[i];
}

internal readonly unsafe struct F16Rows : IRowFormat
{
    public static bool NeedsRangeCheck => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static TLanes Load<TLanes>(byte* row, int i) where TLanes : struct, IFloatLanes<TLanes> => TLanes.LoadHalfFinite((ushort*)row + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scalar(byte* row, int i) => (float)BitConverter.UInt16BitsToHalf(((ushort*)row)[i]);
}

/// <summary>F16 rows known to hold no inf/NaN (<see cref="EdgeLM.Tensors.Tensor.HalvesAllFinite"/>): no range check needed.</summary>
internal readonly unsafe struct FiniteF16Rows : IRowFormat
{
    public static bool NeedsRangeCheck => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static TLanes Load<TLanes>(byte* row, int i) where TLanes : struct, IFloatLanes<TLanes> => F16Rows.Load<TLanes>(row, i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scalar(byte* row, int i) => F16Rows.Scalar(row, i);
}

internal readonly unsafe struct BF16Rows : IRowFormat
{
    public static bool NeedsRangeCheck => false;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static TLanes Load<TLanes>(byte* row, int i) where TLanes : struct, IFloatLanes<TLanes> => TLanes.LoadBFloat16((ushort*)row + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Scalar(byte* row, int i) => BitConverter.Int32BitsToSingle(((ushort*)row)[i] << 16);
}
