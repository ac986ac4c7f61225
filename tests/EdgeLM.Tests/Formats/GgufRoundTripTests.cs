using EdgeLM.Formats.Gguf;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Formats;

public class GgufRoundTripTests
{
    private static readonly (string Key, GgufValue Value)[] AllMetadata =
    [
        ("t.u8", new(GgufValueType.UInt8, (byte)200)),
        ("t.i8", new(GgufValueType.Int8, (sbyte)-100)),
        ("t.u16", new(GgufValueType.UInt16, (ushort)60000)),
        ("t.i16", new(GgufValueType.Int16, (short)-30000)),
        ("t.u32", new(GgufValueType.UInt32, 4_000_000_000u)),
        ("t.i32", new(GgufValueType.Int32, -2_000_000_000)),
        ("t.f32", new(GgufValueType.Float32, 1e-6f)),
        ("t.bool", new(GgufValueType.Bool, true)),
        ("t.str", new(GgufValueType.String, "héllo ✓ 汉字")),
        ("t.empty", new(GgufValueType.String, "")),
        ("t.u64", new(GgufValueType.UInt64, ulong.MaxValue - 5)),
        ("t.i64", new(GgufValueType.Int64, long.MinValue + 7)),
        ("t.f64", new(GgufValueType.Float64, Math.PI)),
        ("a.u8", new(GgufValueType.Array, new byte[] { 0, 1, 255 }, GgufValueType.UInt8)),
        ("a.i8", new(GgufValueType.Array, new sbyte[] { -128, 0, 127 }, GgufValueType.Int8)),
        ("a.u16", new(GgufValueType.Array, new ushort[] { 0, 65535 }, GgufValueType.UInt16)),
        ("a.i16", new(GgufValueType.Array, new short[] { short.MinValue, 5 }, GgufValueType.Int16)),
        ("a.u32", new(GgufValueType.Array, new uint[] { 1, uint.MaxValue }, GgufValueType.UInt32)),
        ("a.i32", new(GgufValueType.Array, new[] { -1, 0, int.MaxValue }, GgufValueType.Int32)),
        ("a.f32", new(GgufValueType.Array, new[] { 1.5f, float.NegativeInfinity, -0.0f }, GgufValueType.Float32)),
        ("a.bool", new(GgufValueType.Array, new[] { true, false, true }, GgufValueType.Bool)),
        ("a.str", new(GgufValueType.Array, new[] { "a", "", "Ġthe", "\n" }, GgufValueType.String)),
        ("a.u64", new(GgufValueType.Array, new ulong[] { ulong.MaxValue }, GgufValueType.UInt64)),
        ("a.i64", new(GgufValueType.Array, new long[] { long.MinValue, 3 }, GgufValueType.Int64)),
        ("a.f64", new(GgufValueType.Array, new[] { double.Epsilon, 1e300 }, GgufValueType.Float64)),
        ("a.emptyi32", new(GgufValueType.Array, Array.Empty<int>(), GgufValueType.Int32)),
    ];

    private static readonly (string Name, GgmlType Type, long[] Shape)[] SomeTensors =
    [
        ("a.f32", GgmlType.F32, [5, 3]),
        ("b.f16", GgmlType.F16, [7]),
        ("c.q8_0", GgmlType.Q8_0, [64, 2]),
        ("d.q4_k", GgmlType.Q4_K, [256, 1, 2]),
        ("e.bf16", GgmlType.BF16, [3, 2, 2, 2]),
        ("f.q6_k", GgmlType.Q6_K, [256]),
    ];

    internal static byte[] RandomBytes(int seed, long n)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(32u)]
    [InlineData(64u)]
    public unsafe void EveryMetadataTypeAndSeveralTensorTypesRoundTrip(uint alignment)
    {
        string dir = TestPaths.NewTempDir();
        string path = Path.Combine(dir, "m.gguf");
        var w = new GgufWriter();
        w.Metadata.Set("general.alignment", GgufValue.Of(alignment));
        foreach (var (k, v) in AllMetadata) w.Metadata.Set(k, v);
        var data = new Dictionary<string, byte[]>();
        int seed = 1;
        foreach (var (name, type, shape) in SomeTensors)
        {
            var bytes = RandomBytes(seed++, Tensor.ExpectedBytes(type, shape));
            data[name] = bytes;
            w.AddTensor(name, type, shape, bytes);
        }
        w.Write(path);
        Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));

        using var f = GgufFile.Open(path);
        Assert.Equal(3, f.Version);
        Assert.Equal((int)alignment, f.Alignment);
        Assert.Equal(0, f.DataOffset % alignment);
        Assert.Equal(AllMetadata.Length + 1, f.Metadata.Count);
        Assert.Equal(["general.alignment", .. AllMetadata.Select(m => m.Key)], f.Metadata.Entries.Select(e => e.Key));
        foreach (var (k, v) in AllMetadata)
        {
            Assert.True(f.Metadata.TryGet(k, out var got), k);
            Assert.Equal(v.Type, got.Type);
            if (v.Type == GgufValueType.Array)
            {
                Assert.Equal(v.ElementType, got.ElementType);
                Assert.Equal(v.Value.GetType(), got.Value.GetType());
                Assert.Equal(((Array)v.Value).Cast<object>(), ((Array)got.Value).Cast<object>());
            }
            else
            {
                Assert.Equal(v.Value.GetType(), got.Value.GetType());
                Assert.Equal(v.Value, got.Value);
            }
        }

        Assert.Equal(SomeTensors.Select(t => t.Name), f.TensorInfos.Select(t => t.Name));
        foreach (var (name, type, shape) in SomeTensors)
        {
            var t = f.GetTensor(name);
            Assert.Equal(type, t.Type);
            Assert.Equal(shape, t.Shape);
            Assert.Equal(data[name], t.Bytes.ToArray());
            var info = f.TensorInfos.Single(i => i.Name == name);
            Assert.Equal(0, info.Offset % alignment);
            Assert.Equal(info.Offset, (long)(t.Data - f.GetTensor(SomeTensors[0].Name).Data));
        }
        // Back to back in order, each padded to the alignment: the layout llama.cpp insists on.
        long expected = 0;
        foreach (var info in f.TensorInfos)
        {
            Assert.Equal(expected, info.Offset);
            expected = (info.Offset + info.ByteLength + alignment - 1) / alignment * alignment;
        }
        Assert.Equal(f.DataOffset + expected, new FileInfo(path).Length);
    }

    [Fact]
    public void WriterMatchesHandBuiltSpecBytes()
    {
        // Independent encoding of the spec: header, one string KV, one u32 KV, one tensor info, pad, data.
        float[] values = [1f, -2f, 3.5f];
        var dataBytes = values.SelectMany(BitConverter.GetBytes).ToArray();
        var expected = new GgufBytes()
            .Raw(0x47, 0x47, 0x55, 0x46)            // "GGUF"
            .U32(3)                                  // version
            .U64(1)                                  // tensor count
            .U64(2)                                  // kv count
            .U64(20).Raw("general.architecture"u8.ToArray()).U32(8).U64(5).Raw("qwen2"u8.ToArray())
            .U64(17).Raw("general.alignment"u8.ToArray()).U32(4).U32(32)
            .U64(3).Raw("vec"u8.ToArray()).U32(1).U64(3).U32(0).U64(0)
            .PadTo(32)
            .Raw(dataBytes)
            .PadTo(32)
            .ToArray();

        string dir = TestPaths.NewTempDir();
        var w = new GgufWriter();
        w.Metadata.Set("general.architecture", GgufValue.Of("qwen2"));
        w.Metadata.Set("general.alignment", GgufValue.Of(32u));
        w.AddTensor("vec", GgmlType.F32, [3], dataBytes);
        string path = Path.Combine(dir, "w.gguf");
        w.Write(path);
        var actual = File.ReadAllBytes(path);
        Assert.Equal(expected, actual);
        Assert.Equal(0, expected.Length % 32);

        using var f = GgufFile.Open(path);
        Assert.Equal("qwen2", f.Metadata.GetString("general.architecture"));
        // 24 header + 45 + 33 (two KVs) + 35 (tensor info) = 137 bytes, padded to 160.
        Assert.Equal(160, f.DataOffset);
    }

    [Fact]
    public void HandBuiltV2FileIsAccepted()
    {
        var bytes = new GgufBytes().Header(2, 1, 1).KvString("general.name", "x")
            .TensorInfo("w", (uint)GgmlType.F32, 0, 2, 2).PadTo(32).Raw(RandomBytes(3, 16)).ToArray();
        string path = Path.Combine(TestPaths.NewTempDir(), "v2.gguf");
        File.WriteAllBytes(path, bytes);
        using var f = GgufFile.Open(path);
        Assert.Equal(2, f.Version);
        Assert.Equal(32, f.Alignment);
        Assert.Equal(bytes.AsSpan(bytes.Length - 16).ToArray(), f.GetTensor("w").Bytes.ToArray());
        Assert.Equal([2L, 2L], f.GetTensor("w").Shape);
    }

    [Fact]
    public void CallbackWritingTheWrongByteCountFailsAndLeavesNoFile()
    {
        string dir = TestPaths.NewTempDir();
        string path = Path.Combine(dir, "bad.gguf");
        File.WriteAllText(path, "previous");

        var tooFew = new GgufWriter();
        tooFew.AddTensor("t", GgmlType.F32, [4], s => s.Write(new byte[12]));
        var e1 = Assert.Throws<InvalidOperationException>(() => tooFew.Write(path));
        Assert.Contains("12", e1.Message);

        var tooMany = new GgufWriter();
        tooMany.AddTensor("t", GgmlType.F32, [4], s => s.Write(new byte[20]));
        Assert.Throws<InvalidOperationException>(() => tooMany.Write(path));

        Assert.Equal("previous", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(dir));
    }

    [Fact]
    public void WriterRejectsBadInputUpFront()
    {
        var w = new GgufWriter();
        Assert.Throws<ArgumentException>(() => w.AddTensor(new string('x', 64), GgmlType.F32, [1], new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("q", GgmlType.Q8_0, [31], new byte[34]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("five", GgmlType.F32, [1, 1, 1, 1, 1], new byte[4]));
        Assert.Throws<ArgumentException>(() => w.AddTensor("zero", GgmlType.F32, [0], new byte[0]));
        w.AddTensor("ok", GgmlType.F32, [1], new byte[4]);
        Assert.Throws<ArgumentException>(() => w.AddTensor("ok", GgmlType.F32, [1], new byte[4]));

        string path = Path.Combine(TestPaths.NewTempDir(), "x.gguf");
        w.Metadata.Set("general.alignment", GgufValue.Of(32)); // Int32: llama.cpp would assert on it
        Assert.Throws<ArgumentException>(() => w.Write(path));
        w.Metadata.Set("general.alignment", GgufValue.Of(48u));
        Assert.Throws<ArgumentException>(() => w.Write(path));
        w.Metadata.Set("general.alignment", GgufValue.Of(32u));
        w.Metadata.Set("mismatch", new GgufValue(GgufValueType.UInt32, 5)); // an int where a uint is declared
        Assert.Throws<ArgumentException>(() => w.Write(path));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void LargeTensorStreamsThroughCallbackInChunks()
    {
        // 4 MiB written in 64 KiB pieces: the writer never needs the whole tensor in memory.
        string path = Path.Combine(TestPaths.NewTempDir(), "big.gguf");
        var w = new GgufWriter();
        const int rows = 1024, cols = 1024;
        w.AddTensor("big", GgmlType.F32, [cols, rows], s =>
        {
            var chunk = new byte[64 * 1024];
            for (int i = 0; i < rows * cols * 4 / chunk.Length; i++)
            {
                chunk.AsSpan().Fill((byte)i);
                s.Write(chunk);
            }
        });
        w.Write(path);
        using var f = GgufFile.Open(path);
        var t = f.GetTensor("big");
        Assert.Equal(rows * cols * 4L, t.ByteLength);
        // A 64 KiB chunk holds 16 rows of 4 KiB; chunk i was filled with the byte i.
        Assert.Equal(0, t.Row(5)[0]);
        Assert.Equal(17 / 16, t.Row(17)[4095]);
        Assert.Equal(1023 / 16, t.Row(1023)[0]);
    }
}
