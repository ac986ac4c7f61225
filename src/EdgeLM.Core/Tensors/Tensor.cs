using System.Runtime.Intrinsics;

namespace EdgeLM.Tensors;

/// <summary>
/// A read-only view of tensor data that lives outside the managed heap (normally a memory-mapped file).
/// Shape is in ggml order: Shape[0] is the innermost (contiguous) dimension, so a PyTorch
/// weight [out, in] has Shape = {in, out}: <see cref="RowLength"/> = in, <see cref="RowCount"/> = out.
/// The owner of the memory (the mapped file) must outlive the view.
/// </summary>
public sealed unsafe class Tensor
{
    public string Name { get; }
    public GgmlType Type { get; }
    public long[] Shape { get; }
    public byte* Data { get; }
    public long ByteLength { get; }

    public Tensor(string name, GgmlType type, long[] shape, byte* data, long byteLength)
    {
        Name = name;
        Type = type;
        Shape = shape;
        Data = data;
        ByteLength = byteLength;
        long expected = ExpectedBytes(type, shape);
        if (byteLength != expected)
            throw new InvalidDataException($"tensor '{name}': {byteLength} bytes given, {expected} expected for {type} [{string.Join(", ", shape)}]");
    }

    // 0: not scanned yet, 1: every half finite, 2: some inf/NaN. Races only repeat the same scan.
    private int _halfScan;

    /// <summary>
    /// Whether an F16 tensor holds no inf or NaN value. Scanned once, on first use (it reads the whole tensor): the
    /// decode kernels convert halves in registers exactly for finite values only, and checking the range of every
    /// vector cost them 10-15% of their speed. False for other types.
    /// </summary>
    public bool HalvesAllFinite
    {
        get
        {
            if (Type != GgmlType.F16) return false;
            int scan = Volatile.Read(ref _halfScan);
            if (scan == 0) Volatile.Write(ref _halfScan, scan = HasSpecialHalf((ushort*)Data, ByteLength / 2) ? 2 : 1);
            return scan == 1;
        }
    }

    /// <summary>Whether any of the n halves at p has the all-ones exponent of inf and NaN.</summary>
    internal static bool HasSpecialHalf(ushort* p, long n)
    {
        const ushort exponent = 0x7C00;
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(exponent);
            var any = Vector256<ushort>.Zero;
            for (; i + 16 <= n; i += 16) any |= Vector256.Equals(Vector256.Load(p + i) & mask, mask);
            if (any != Vector256<ushort>.Zero) return true;
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var mask = Vector128.Create(exponent);
            var any = Vector128<ushort>.Zero;
            for (; i + 8 <= n; i += 8) any |= Vector128.Equals(Vector128.Load(p + i) & mask, mask);
            if (any != Vector128<ushort>.Zero) return true;
        }
        for (; i < n; i++)
            if ((p[i] & exponent) == exponent) return true;
        return false;
    }

    public long ElementCount
    {
        get { long n = 1; foreach (var d in Shape) n *= d; return n; }
    }

    public int RowLength => checked((int)Shape[0]);

    public long RowCount => Shape.Length <= 1 ? 1 : ElementCount / Shape[0];

    public long RowStride => GgmlTypeInfo.RowBytes(Type, Shape[0]);

    public ReadOnlySpan<byte> Row(long row)
    {
        if ((ulong)row >= (ulong)RowCount) throw new ArgumentOutOfRangeException(nameof(row));
        long stride = RowStride;
        return new ReadOnlySpan<byte>(Data + row * stride, checked((int)stride));
    }

    public ReadOnlySpan<byte> Bytes => new(Data, checked((int)ByteLength));

    /// <summary>Bytes a tensor of this type and shape occupies; throws on shapes that overflow or do not fit blocks.</summary>
    public static long ExpectedBytes(GgmlType type, long[] shape)
    {
        if (shape.Length == 0) return GgmlTypeInfo.BlockBytes(type);
        long rows = 1;
        for (int i = 1; i < shape.Length; i++)
        {
            if (shape[i] <= 0) throw new InvalidDataException($"bad dimension {shape[i]}");
            rows = checked(rows * shape[i]);
        }
        if (shape[0] <= 0) throw new InvalidDataException($"bad dimension {shape[0]}");
        return checked(rows * GgmlTypeInfo.RowBytes(type, shape[0]));
    }

    public override string ToString() => $"{Name} {Type} [{string.Join(", ", Shape)}]";
}
