using System.Buffers.Binary;
using System.Text;
using EdgeLM.Tensors;

namespace EdgeLM.Formats.Gguf;

/// <summary>
/// Builds a GGUF v3 file the way ggml's gguf_write does, so llama.cpp accepts it: tensors are laid out in the
/// order added, each at an offset that is a multiple of general.alignment (a u32, default 32) and padded to
/// it, and the data section starts aligned. Tensor data is produced by callbacks during <see cref="Write"/>,
/// so models larger than memory stream straight to disk.
/// </summary>
public sealed class GgufWriter
{
    /// <summary>ggml's GGML_MAX_NAME (64) includes the terminating NUL.</summary>
    public const int MaxTensorNameBytes = 63;

    private readonly List<PendingTensor> _tensors = new();
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    private sealed record PendingTensor(string Name, GgmlType Type, long[] Shape, long ByteLength, Action<Stream> WriteData);

    public GgufMetadata Metadata { get; } = new();

    public int TensorCount => _tensors.Count;

    /// <summary>Adds a tensor (shape in ggml order); <paramref name="writeData"/> must write exactly its byte size.</summary>
    public void AddTensor(string name, GgmlType type, long[] shape, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(shape);
        if (Encoding.UTF8.GetByteCount(name) > MaxTensorNameBytes)
            throw new ArgumentException($"tensor name '{name}' is longer than {MaxTensorNameBytes} bytes");
        if (!GgmlTypeInfo.IsKnown(type)) throw new ArgumentException($"tensor '{name}': unknown type {type}");
        if (shape.Length is 0 or > GgufFile.MaxDims)
            throw new ArgumentException($"tensor '{name}' has {shape.Length} dimensions (1..{GgufFile.MaxDims} allowed)");
        long bytes = GgufFile.TensorBytes(type, shape)
            ?? throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", shape)}] is invalid for {type}");
        if (!_names.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");
        _tensors.Add(new PendingTensor(name, type, (long[])shape.Clone(), bytes, writeData));
    }

    public void AddTensor(string name, GgmlType type, long[] shape, ReadOnlyMemory<byte> data) =>
        AddTensor(name, type, shape, s => s.Write(data.Span));

    public int Alignment
    {
        get
        {
            if (!Metadata.TryGet(GgufFile.AlignmentKey, out var v)) return GgufFile.DefaultAlignment;
            // llama.cpp reads this key with gguf_get_val_u32, which asserts the type.
            if (v.Type != GgufValueType.UInt32 || v.Value is not uint a)
                throw new ArgumentException($"{GgufFile.AlignmentKey} must be a UInt32, found {v.Type}");
            if (a == 0 || a > 1 << 30 || (a & (a - 1)) != 0)
                throw new ArgumentException($"{GgufFile.AlignmentKey} {a} is not a power of two");
            return (int)a;
        }
    }

    public void Write(string path)
    {
        int alignment = Alignment;
        foreach (var kv in Metadata.Entries) ValidateValue(kv.Key, kv.Value);
        AtomicFile.Write(path, fs => WriteTo(fs, alignment));
    }

    private void WriteTo(Stream output, int alignment)
    {
        var w = new LittleEndianWriter(output);
        w.U32(GgufFile.Magic);
        w.U32(3);
        w.U64((ulong)_tensors.Count);
        w.U64((ulong)Metadata.Count);
        foreach (var kv in Metadata.Entries)
        {
            w.String(kv.Key);
            w.U32((uint)kv.Value.Type);
            WriteValue(w, kv.Value);
        }

        long offset = 0;
        foreach (var t in _tensors)
        {
            w.String(t.Name);
            w.U32((uint)t.Shape.Length);
            foreach (long d in t.Shape) w.U64((ulong)d);
            w.U32((uint)t.Type);
            w.U64((ulong)offset);
            offset = GgufFile.AlignUp(checked(offset + t.ByteLength), alignment);
        }
        w.Pad(alignment);
        w.Flush();

        foreach (var t in _tensors)
        {
            var counter = new ExactLengthStream(output, t.ByteLength, t.Name);
            t.WriteData(counter);
            counter.CheckComplete();
            w.Advance(t.ByteLength);
            w.Pad(alignment);
            w.Flush();
        }
    }

    private static void ValidateValue(string key, GgufValue v)
    {
        if (v.Value is null) throw new ArgumentException($"metadata '{key}' has no value");
        bool ok = v.Type switch
        {
            GgufValueType.UInt8 => v.Value is byte,
            GgufValueType.Int8 => v.Value is sbyte,
            GgufValueType.UInt16 => v.Value is ushort,
            GgufValueType.Int16 => v.Value is short,
            GgufValueType.UInt32 => v.Value is uint,
            GgufValueType.Int32 => v.Value is int,
            GgufValueType.Float32 => v.Value is float,
            GgufValueType.Bool => v.Value is bool,
            GgufValueType.String => v.Value is string,
            GgufValueType.UInt64 => v.Value is ulong,
            GgufValueType.Int64 => v.Value is long,
            GgufValueType.Float64 => v.Value is double,
            GgufValueType.Array => v.ElementType switch
            {
                GgufValueType.UInt8 => v.Value is byte[],
                GgufValueType.Int8 => v.Value is sbyte[],
                GgufValueType.UInt16 => v.Value is ushort[],
                GgufValueType.Int16 => v.Value is short[],
                GgufValueType.UInt32 => v.Value is uint[],
                GgufValueType.Int32 => v.Value is int[],
                GgufValueType.Float32 => v.Value is float[],
                GgufValueType.Bool => v.Value is bool[],
                GgufValueType.String => v.Value is string[] s && s.All(x => x != null),
                GgufValueType.UInt64 => v.Value is ulong[],
                GgufValueType.Int64 => v.Value is long[],
                GgufValueType.Float64 => v.Value is double[],
                _ => false,
            },
            _ => false,
        };
        if (!ok)
            throw new ArgumentException($"metadata '{key}': a {v.Type}{(v.Type == GgufValueType.Array ? " of " + v.ElementType : "")} cannot hold a {v.Value.GetType().Name}");
    }

    private static void WriteValue(LittleEndianWriter w, GgufValue v)
    {
        switch (v.Value)
        {
            case byte x: w.U8(x); break;
            case sbyte x: w.U8((byte)x); break;
            case ushort x: w.U16(x); break;
            case short x: w.U16((ushort)x); break;
            case uint x: w.U32(x); break;
            case int x: w.U32((uint)x); break;
            case float x: w.U32(BitConverter.SingleToUInt32Bits(x)); break;
            case bool x: w.U8(x ? (byte)1 : (byte)0); break;
            case string x: w.String(x); break;
            case ulong x: w.U64(x); break;
            case long x: w.U64((ulong)x); break;
            case double x: w.U64(BitConverter.DoubleToUInt64Bits(x)); break;
            case Array a:
                w.U32((uint)v.ElementType);
                w.U64((ulong)a.Length);
                if (a is string[] strings) foreach (var s in strings) w.String(s);
                else if (a is bool[] bools) foreach (var b in bools) w.U8(b ? (byte)1 : (byte)0);
                else foreach (var item in a) WriteValue(w, new GgufValue(v.ElementType, item!));
                break;
            default: throw new ArgumentException($"unsupported metadata value {v.Value.GetType().Name}");
        }
    }

    /// <summary>Buffered little-endian writer that tracks the absolute position for padding.</summary>
    private sealed class LittleEndianWriter(Stream output)
    {
        private readonly byte[] _buffer = new byte[1 << 16];
        private int _used;
        private long _position;

        private Span<byte> Reserve(int n)
        {
            if (_used + n > _buffer.Length) Flush();
            var span = _buffer.AsSpan(_used, n);
            _used += n;
            _position += n;
            return span;
        }

        public void U8(byte v) => Reserve(1)[0] = v;
        public void U16(ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Reserve(2), v);
        public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Reserve(4), v);
        public void U64(ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Reserve(8), v);

        public void String(string s)
        {
            int n = Encoding.UTF8.GetByteCount(s);
            U64((ulong)n);
            if (n <= _buffer.Length)
            {
                Encoding.UTF8.GetBytes(s, Reserve(n));
            }
            else
            {
                Flush();
                output.Write(Encoding.UTF8.GetBytes(s));
                _position += n;
            }
        }

        public void Pad(int alignment)
        {
            long pad = GgufFile.AlignUp(_position, alignment) - _position;
            for (long i = 0; i < pad; i++) U8(0);
        }

        /// <summary>Accounts for bytes written to the stream directly (tensor data).</summary>
        public void Advance(long n) => _position += n;

        public void Flush()
        {
            output.Write(_buffer, 0, _used);
            _used = 0;
        }
    }
}

/// <summary>
/// Forwards writes to the output and fails as soon as a tensor callback writes more (or, at the end, fewer)
/// bytes than the tensor's shape requires, so a faulty producer cannot shift every later tensor.
/// </summary>
internal sealed class ExactLengthStream(Stream inner, long expected, string name) : Stream
{
    public long Written { get; private set; }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (buffer.Length > expected - Written)
            throw new InvalidOperationException($"tensor '{name}': data callback wrote more than the expected {expected} bytes");
        inner.Write(buffer);
        Written += buffer.Length;
    }

    public override void WriteByte(byte value) => Write([value]);

    public void CheckComplete()
    {
        if (Written != expected)
            throw new InvalidOperationException($"tensor '{name}': data callback wrote {Written} bytes, expected {expected}");
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => Written;
    public override long Position { get => Written; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
