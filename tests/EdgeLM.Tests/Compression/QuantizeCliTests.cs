using System.Text.Json;
using EdgeLM.Formats.Gguf;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Compression;

public class QuantizeCliTests(SyntheticFixture fixture) : IClassFixture<SyntheticFixture>
{
    private string NewOutput() => Path.Combine(fixture.Dir, Guid.NewGuid().ToString("N")[..8] + ".gguf");

    private static void AssertOneLineFailure(CliResult r, string expected)
    {
        Assert.True(r.ExitCode != 0, r.ToString());
        Assert.Single(r.StdErr.Trim().Split('\n'));
        Assert.StartsWith("edgelm", r.StdErr);
        Assert.Contains(expected, r.StdErr);
        Assert.DoesNotContain("   at ", r.StdErr);
    }

    private void AssertNoOutput(string output) =>
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(output)!, Path.GetFileName(output) + "*"));

    [Fact]
    public void QuantizesAndWritesTheJsonReport()
    {
        string output = NewOutput(), reportPath = output + ".json";
        var r = CliRunner.Run(["quantize", fixture.GgufPath, output, "--type", "q8_0", "--tensor-type", "token_embd=q4_0", "-t", "2", "--report", reportPath]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("compression:", r.StdOut);
        Assert.Contains("blk.1.ffn_down.weight", r.StdOut);

        using var file = GgufFile.Open(output);
        using var json = JsonDocument.Parse(File.ReadAllBytes(reportPath));
        var root = json.RootElement;
        Assert.Equal("q8_0", root.GetProperty("file_type").GetString());
        Assert.Equal(file.Tensors.Values.Sum(t => t.ByteLength), root.GetProperty("tensor_bytes_out").GetInt64());
        Assert.Equal(new FileInfo(output).Length, root.GetProperty("output_file_bytes").GetInt64());
        var tensors = root.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(file.Tensors.Count, tensors.Count);
        foreach (var t in tensors)
        {
            var actual = file.Tensors[t.GetProperty("name").GetString()!];
            Assert.Equal(actual.Type.ToString(), t.GetProperty("type").GetString());
            Assert.Equal(actual.ByteLength, t.GetProperty("bytes_out").GetInt64());
        }
        Assert.Equal("Q4_0", tensors.Single(t => t.GetProperty("name").GetString() == "token_embd.weight").GetProperty("type").GetString());
        Assert.Equal(7L, file.Metadata.GetInteger("general.file_type"));
    }

    [Theory]
    [InlineData("--type", "q9_k", "unknown quantization type")]
    [InlineData("--tensor-type", "token_embd", "REGEX=TYPE")]
    [InlineData("--tensor-type", "blk.(=q8_0", "invalid regular expression")]
    [InlineData("--method", "magic", "unknown quantization method")]
    public void BadOptionsAreOneLineErrorsWithoutOutput(string option, string value, string expected)
    {
        string output = NewOutput();
        string[] args = option == "--type"
            ? ["quantize", fixture.GgufPath, output, option, value]
            : ["quantize", fixture.GgufPath, output, "--type", "q8_0", option, value];
        AssertOneLineFailure(CliRunner.Run(args), expected);
        AssertNoOutput(output);
    }

    [Fact]
    public void MissingInputAndMissingOutputFolderAreOneLineErrors()
    {
        string output = NewOutput();
        AssertOneLineFailure(CliRunner.Run(["quantize", Path.Combine(fixture.Dir, "nope.gguf"), output, "--type", "q8_0"]), "not found");
        AssertNoOutput(output);
        string inMissingFolder = Path.Combine(fixture.Dir, "no-such-folder", "out.gguf");
        AssertOneLineFailure(CliRunner.Run(["quantize", fixture.GgufPath, inMissingFolder, "--type", "q8_0"]), "folder not found");
        Assert.False(Directory.Exists(Path.GetDirectoryName(inMissingFolder)));
        AssertOneLineFailure(CliRunner.Run(["quantize", fixture.GgufPath, fixture.GgufPath, "--type", "q8_0"]), "overwrite the input");
    }
}
