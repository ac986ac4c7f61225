using Xunit.Abstractions;
using System.Diagnostics;
using EdgeLM.Formats.Gguf;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Formats;

public class GgufHostileTests(ITestOutputHelper output)
{
    private const uint F32 = (uint)GgmlType.F32;

    private static GgufBytes Valid1Kv() => new GgufBytes().Header(3, 0, 1);

    public static TheoryData<string, byte[]> Cases()
    {
        var d = new TheoryData<string, byte[]>();
        void Add(string name, GgufBytes b) => d.Add(name, b.ToArray());

        Add("empty", new GgufBytes());
        Add("wrong magic", new GgufBytes().Raw("GGML"u8.ToArray()).U32(3).U64(0).U64(0));
        Add("version 1", new GgufBytes().Header(1, 0, 0));
        Add("version 4", new GgufBytes().Header(4, 0, 0));
        Add("huge kv count", new GgufBytes().Header(3, 0, ulong.MaxValue));
        Add("huge tensor count", new GgufBytes().Header(3, 1UL << 60, 0));
        Add("kv count beyond data", new GgufBytes().Header(3, 0, 1000).KvU32("a", 1));
        Add("huge key length", Valid1Kv().U64(ulong.MaxValue).U32(4).U32(0));
        Add("key length past end", Valid1Kv().U64(100).Raw("abc"u8.ToArray()));
        Add("huge string value", Valid1Kv().Str("k").U32(8).U64(1UL << 62));
        Add("huge array count", Valid1Kv().Str("k").U32(9).U32(5).U64(1UL << 61));
        Add("huge string array count", Valid1Kv().Str("k").U32(9).U32(8).U64(1UL << 40).U64(1).Raw(0x41));
        Add("array count just past end", Valid1Kv().Str("k").U32(9).U32(4).U64(3).U32(1).U32(2));
        Add("nested array", Valid1Kv().Str("k").U32(9).U32(9).U64(1).U32(4).U64(1).U32(7));
        Add("unknown value type", Valid1Kv().Str("k").U32(13).U32(0));
        Add("unknown array element type", Valid1Kv().Str("k").U32(9).U32(77).U64(1).U32(0));
        Add("invalid bool", Valid1Kv().Str("k").U32(7).U8(2));
        Add("duplicate key", new GgufBytes().Header(3, 0, 2).KvU32("k", 1).KvU32("k", 2));
        Add("alignment not power of two", new GgufBytes().Header(3, 0, 1).KvU32("general.alignment", 48));
        Add("alignment zero", new GgufBytes().Header(3, 0, 1).KvU32("general.alignment", 0));
        Add("alignment is a string", new GgufBytes().Header(3, 0, 1).KvString("general.alignment", "32"));

        GgufBytes OneTensor(uint type, ulong offset, params ulong[] dims) =>
            new GgufBytes().Header(3, 1, 0).TensorInfo("t", type, offset, dims).PadTo(32).Zeros(64);
        Add("unknown tensor type", OneTensor(99, 0, 4));
        Add("removed tensor type 4", OneTensor(4, 0, 4));
        Add("five dims", OneTensor(F32, 0, 1, 1, 1, 1, 1));
        Add("zero dims", OneTensor(F32, 0));
        Add("dim zero", OneTensor(F32, 0, 4, 0));
        Add("negative dim", OneTensor(F32, 0, 4, unchecked((ulong)-1L)));
        Add("dims product overflows", OneTensor(F32, 0, 1UL << 32, 1UL << 32, 1UL << 32));
        Add("bytes overflow", OneTensor(F32, 0, 1UL << 62, 2));
        Add("row not a multiple of block", OneTensor((uint)GgmlType.Q8_0, 0, 33));
        Add("data past end", OneTensor(F32, 0, 17));
        Add("offset past end", OneTensor(F32, 1UL << 40, 1));
        Add("offset near u64 max", OneTensor(F32, ulong.MaxValue - 31, 1));
        Add("misaligned offset", OneTensor(F32, 4, 1));
        Add("duplicate tensor", new GgufBytes().Header(3, 2, 0).TensorInfo("t", F32, 0, 4).TensorInfo("t", F32, 32, 4).PadTo(32).Zeros(64));
        Add("overlapping tensors", new GgufBytes().Header(3, 2, 0).TensorInfo("a", F32, 0, 16).TensorInfo("b", F32, 32, 4).PadTo(32).Zeros(96));
        Add("tensor name past end", new GgufBytes().Header(3, 1, 0).U64(1000).Raw("t"u8.ToArray()).Zeros(40));
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void HostileFileFailsFastWithOneLineMessage(string name, byte[] bytes)
    {
        string path = Path.Combine(TestPaths.NewTempDir(), "h.gguf");
        File.WriteAllBytes(path, bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<InvalidDataException>(() => GgufFile.Open(path).Dispose());
        sw.Stop();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        output.WriteLine($"{name}: {e.Message}");
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(path, e.Message);
        Assert.True(allocated < 4 << 20, $"{name}: allocated {allocated} bytes");
        Assert.True(sw.ElapsedMilliseconds < 2000, $"{name}: took {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void EveryTruncationOfAValidFileFails()
    {
        // The last tensor ends exactly at the file end (32 bytes of F32), so every shorter prefix is invalid.
        var w = new GgufWriter();
        w.Metadata.Set("general.architecture", GgufValue.Of("qwen2"));
        w.Metadata.Set("tokens", GgufValue.Of(["a", "bc", "def"]));
        w.Metadata.Set("scores", GgufValue.Of([0.5f, 1.5f]));
        w.Metadata.Set("flag", GgufValue.Of(true));
        w.Metadata.Set("count", GgufValue.Of(7UL));
        w.AddTensor("first", GgmlType.Q8_0, [32, 2], GgufRoundTripTests.RandomBytes(1, 68));
        w.AddTensor("last", GgmlType.F32, [8], GgufRoundTripTests.RandomBytes(2, 32));
        string dir = TestPaths.NewTempDir();
        string full = Path.Combine(dir, "full.gguf");
        w.Write(full);
        var bytes = File.ReadAllBytes(full);
        using (var ok = GgufFile.Open(full)) Assert.Equal(bytes.Length, ok.DataOffset + ok.TensorInfos[1].Offset + 32);

        var sw = Stopwatch.StartNew();
        string cut = Path.Combine(dir, "cut.gguf");
        for (int n = 0; n < bytes.Length; n++)
        {
            File.WriteAllBytes(cut, bytes.AsSpan(0, n).ToArray());
            var e = Assert.Throws<InvalidDataException>(() => GgufFile.Open(cut).Dispose());
            Assert.DoesNotContain('\n', e.Message);
        }
        Assert.True(sw.ElapsedMilliseconds < 5000, $"truncation sweep took {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void MissingFileIsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => GgufFile.Open(Path.Combine(TestPaths.NewTempDir(), "nope.gguf")));
    }
}
