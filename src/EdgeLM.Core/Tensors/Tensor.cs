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
