using Xunit.Abstractions;
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Formats;

public class SafetensorsTests(ITestOutputHelper output)
{
    private static byte[] Rand(int seed, long n) => GgufRoundTripTests.RandomBytes(seed, n);

    [Fact]
    public void RoundTripKeepsBytesAndReversesShapes()
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "m.safetensors");
        var w = new SafetensorsWriter();
        var a = Rand(1, 6 * 4 * 4);
        var b = Rand(2, 5 * 2);
        var c = Rand(3, 2 * 3 * 4 * 2);
        w.Add("w.f32", GgmlType.F32, [6, 4], a);
        w.Add("v.f16", GgmlType.F16, [5], b);
        w.Add("x.bf16", GgmlType.BF16, [2, 3, 4], c);
        w.Write(path);

        using var f = SafetensorsFile.Open(path);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(0, f.DataOffset % 8);
        Assert.Equal([4L, 6L], f.GetTensor("w.f32").Shape);
        Assert.Equal([6L, 4L], f.TensorInfos.Single(t => t.Name == "w.f32").TorchShape);
        Assert.Equal([5L], f.GetTensor("v.f16").Shape);
        Assert.Equal([4L, 3L, 2L], f.GetTensor("x.bf16").Shape);
        Assert.Equal(GgmlType.F16, f.GetTensor("v.f16").Type);
        Assert.Equal(GgmlType.BF16, f.GetTensor("x.bf16").Type);
        Assert.Equal(a, f.GetTensor("w.f32").Bytes.ToArray());
        Assert.Equal(b, f.GetTensor("v.f16").Bytes.ToArray());
        Assert.Equal(c, f.GetTensor("x.bf16").Bytes.ToArray());
        Assert.Equal(f.DataOffset + a.Length + b.Length + c.Length, new FileInfo(path).Length);

        // The header is plain JSON that any reader (Python's json included) can parse independently.
        var bytes = File.ReadAllBytes(path);
        long n = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        Assert.Equal("F32", doc.RootElement.GetProperty("w.f32").GetProperty("dtype").GetString());
        Assert.Equal([0L, 96L], doc.RootElement.GetProperty("w.f32").GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()));
    }

    [Fact]
    public void WriterRejectsUnsupportedTypesAndWrongByteCounts()
    {
        var w = new SafetensorsWriter();
        Assert.Throws<ArgumentException>(() => w.Add("q", GgmlType.Q8_0, [32], new byte[34]));
        Assert.Throws<ArgumentException>(() => w.Add("__metadata__", GgmlType.F32, [1], new byte[4]));
        w.Add("t", GgmlType.F32, [2], new byte[7]);
        string dir = TestPaths.NewTempDir();
        Assert.Throws<InvalidOperationException>(() => w.Write(Path.Combine(dir, "x.safetensors")));
        Assert.Empty(Directory.GetFiles(dir));
    }

    private static byte[] FileWithHeader(string json, int dataBytes, ulong? declaredLength = null)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    public static TheoryData<string, byte[]> HostileFiles() => new()
    {
        { "empty", [] },
        { "short", [1, 2, 3] },
        { "huge header length", FileWithHeader("{}", 0, ulong.MaxValue) },
        { "header length past end", FileWithHeader("{}", 0, 1000) },
        { "header over limit", FileWithHeader("{}", 0, 200_000_000) },
        { "not json", FileWithHeader("{not json", 0) },
        { "json array", FileWithHeader("[1,2]", 0) },
        { "unsupported dtype", FileWithHeader("""{"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}""", 8) },
        { "missing dtype", FileWithHeader("""{"t":{"shape":[1],"data_offsets":[0,4]}}""", 4) },
        { "end past data", FileWithHeader("""{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8) },
        { "begin after end", FileWithHeader("""{"t":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""", 8) },
        { "negative offset", FileWithHeader("""{"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}""", 8) },
        { "huge offset", FileWithHeader("""{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999]}}""", 8) },
        { "size mismatch", FileWithHeader("""{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8) },
        { "zero dim", FileWithHeader("""{"t":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}""", 0) },
        { "negative dim", FileWithHeader("""{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8) },
        { "shape overflow", FileWithHeader("""{"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}""", 8) },
        { "five dims", FileWithHeader("""{"t":{"dtype":"F32","shape":[1,1,1,1,1],"data_offsets":[0,4]}}""", 4) },
        { "missing offsets", FileWithHeader("""{"t":{"dtype":"F32","shape":[1]}}""", 4) },
        { "duplicate name", FileWithHeader("""{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4) },
        { "metadata not strings", FileWithHeader("""{"__metadata__":{"format":1}}""", 0) },
        { "deeply nested", FileWithHeader(new string('[', 1000) + new string(']', 1000), 0) },
    };

    [Theory]
    [MemberData(nameof(HostileFiles))]
    public void HostileHeaderFailsWithInvalidData(string name, byte[] bytes)
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "h.safetensors");
        File.WriteAllBytes(path, bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose());
        output.WriteLine($"{name}: {e.Message}");
        Assert.DoesNotContain('\n', e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 4 << 20, name);
    }

    [Fact]
    public void EveryTruncationOfAValidFileFails()
    {
        string dir = TestPaths.NewTempDir();
        string full = Path.Combine(dir, "full.safetensors");
        var w = new SafetensorsWriter();
        w.Add("a", GgmlType.F16, [3, 2], Rand(1, 12));
        w.Add("b", GgmlType.F32, [2], Rand(2, 8));
        w.Write(full);
        var bytes = File.ReadAllBytes(full);
        string cut = Path.Combine(dir, "cut.safetensors");
        for (int n = 0; n < bytes.Length; n++)
        {
            File.WriteAllBytes(cut, bytes.AsSpan(0, n).ToArray());
            Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(cut).Dispose());
        }
    }

    [Fact]
    public void ScalarBecomesOneElementTensor()
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "s.safetensors");
        File.WriteAllBytes(path, FileWithHeader("""{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}  """, 4));
        using var f = SafetensorsFile.Open(path);
        Assert.Equal([1L], f.GetTensor("s").Shape);
    }

    [Fact]
    public void ShardedWriterSplitsAndIndexes()
    {
        string dir = TestPaths.NewTempDir();
        var w = new ShardedSafetensorsWriter(maxShardBytes: 100);
        var data = new Dictionary<string, byte[]>
        {
            ["a"] = Rand(1, 40), ["b"] = Rand(2, 40), ["c"] = Rand(3, 40), ["big"] = Rand(4, 160), ["d"] = Rand(5, 8),
        };
        foreach (var (name, bytes) in data) w.Add(name, GgmlType.F32, [bytes.Length / 4], bytes);
        var files = w.Write(dir);

        // a+b fit in 100 bytes; c starts shard 2; big (over the limit) gets shard 3; d starts shard 4.
        string[] shards = ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"];
        Assert.Equal([.. shards, "model.safetensors.index.json"], files);
        Assert.False(File.Exists(Path.Combine(dir, "model.safetensors")));

        using var index = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "model.safetensors.index.json")));
        Assert.Equal(data.Values.Sum(v => v.Length), index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(shards[0], map["a"]);
        Assert.Equal(shards[0], map["b"]);
        Assert.Equal(shards[1], map["c"]);
        Assert.Equal(shards[2], map["big"]);
        Assert.Equal(shards[3], map["d"]);
        foreach (var (name, file) in map)
        {
            using var f = SafetensorsFile.Open(Path.Combine(dir, file!));
            Assert.Equal(data[name], f.GetTensor(name).Bytes.ToArray());
        }
    }

    [Fact]
    public void ShardedWriterWithOneShardWritesModelSafetensors()
    {
        string dir = TestPaths.NewTempDir();
        var w = new ShardedSafetensorsWriter(1 << 20);
        w.Add("x", GgmlType.F16, [2, 2], Rand(1, 8));
        Assert.Equal(["model.safetensors"], w.Write(dir));
        Assert.Equal(["model.safetensors"], Directory.GetFiles(dir).Select(Path.GetFileName));
    }
}
