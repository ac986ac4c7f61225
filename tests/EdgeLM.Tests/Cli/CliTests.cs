using System.Runtime.InteropServices;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Cli;

public class CliTests(SyntheticFixture fixture) : IClassFixture<SyntheticFixture>
{
    private static void AssertCleanFailure(CliResult r, int expectedExit = 1)
    {
        Assert.True(r.ExitCode == expectedExit, r.ToString());
        Assert.DoesNotContain("Unhandled exception", r.StdErr);
        Assert.DoesNotContain("   at ", r.StdErr);
        Assert.StartsWith("edgelm", r.StdErr);
    }

    [Fact]
    public void LogitsFileHasOneFloatRowPerTokenAndMatchesTheEngine()
    {
        string output = Path.Combine(fixture.Dir, "logits.f32");
        var r = CliRunner.Run(["logits", "-m", fixture.GgufPath, "--ids", "1,2,3,4,5", "--out", output, "-t", "1"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        var bytes = File.ReadAllBytes(output);
        int vocab = SyntheticFixture.Config.VocabSize;
        Assert.Equal(5 * vocab * 4, bytes.Length);

        using var model = ModelLoader.Load(fixture.GgufPath);
        using var session = new InferenceSession(model.Config, model.Weights, 16, threads: 1);
        var expected = new float[5 * vocab];
        session.ForwardAll([1, 2, 3, 4, 5], expected);
        Assert.True(MemoryMarshal.Cast<byte, float>(bytes).SequenceEqual(expected));
    }

    [Fact]
    public void InfoPrintsHyperParametersAndTensorTable()
    {
        var r = CliRunner.Run(["info", "-m", fixture.GgufPath]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("qwen2", r.StdOut);
        Assert.Contains("blk.1.ffn_down.weight", r.StdOut);
        Assert.Contains($"hidden size:      {SyntheticFixture.Config.HiddenSize}", r.StdOut);
    }

    [Fact]
    public void RunWithTheSameSeedPrintsTheSameText()
    {
        string[] args = ["run", "-m", fixture.GgufPath, "-p", "abc", "-n", "16", "--seed", "3", "--temp", "1.2", "-t", "1"];
        var a = CliRunner.Run(args);
        var b = CliRunner.Run(args);
        Assert.True(a.ExitCode == 0, a.ToString());
        Assert.Equal(a.StdOut, b.StdOut);
    }

    [Fact]
    public void MissingModelFileIsAOneLineError()
    {
        var r = CliRunner.Run(["run", "-m", Path.Combine(fixture.Dir, "nope.gguf"), "-p", "x"]);
        AssertCleanFailure(r);
        Assert.Single(r.StdErr.Trim().Split('\n'));
    }

    [Fact]
    public void TruncatedModelFileIsAOneLineError()
    {
        string truncated = Path.Combine(fixture.Dir, "truncated.gguf");
        var bytes = File.ReadAllBytes(fixture.GgufPath);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        AssertCleanFailure(CliRunner.Run(["info", "-m", truncated]));
    }

    [Fact]
    public void GarbageFileIsAOneLineError()
    {
        string garbage = Path.Combine(fixture.Dir, "garbage.gguf");
        File.WriteAllBytes(garbage, Enumerable.Range(0, 4096).Select(i => (byte)(i * 31 + 7)).ToArray());
        AssertCleanFailure(CliRunner.Run(["run", "-m", garbage, "-p", "x"]));
    }

    [Fact]
    public void PromptPastTheContextIsRefused()
    {
        var r = CliRunner.Run(["run", "-m", fixture.GgufPath, "-p", new string('a', 400), "-n", "4", "--ctx", "32"]);
        AssertCleanFailure(r);
        Assert.Contains("context", r.StdErr);
    }

    [Fact]
    public void TokenIdOutsideTheVocabularyIsRefusedAndNoFileIsWritten()
    {
        string output = Path.Combine(fixture.Dir, "never.f32");
        AssertCleanFailure(CliRunner.Run(["logits", "-m", fixture.GgufPath, "--ids", "1,99999", "--out", output]));
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(fixture.Dir, "*.tmp-*"));
    }

    [Fact]
    public void MalformedTokenizerJsonIsAOneLineError()
    {
        string bad = Path.Combine(fixture.Dir, "bad-tokenizer.json");
        File.WriteAllText(bad, "{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2");
        AssertCleanFailure(CliRunner.Run(["tokenize", "--tokenizer", bad, "-p", "hi"]));
    }

    [Fact]
    public void UnknownOptionsAndPresetsAreUsageErrors()
    {
        AssertCleanFailure(CliRunner.Run(["run", "--bogus"]), expectedExit: 2);
        AssertCleanFailure(CliRunner.Run(["synth", "--preset", "gpt-5", "-o", Path.Combine(fixture.Dir, "x.gguf")]), expectedExit: 2);
        AssertCleanFailure(CliRunner.Run(["run", "-m", fixture.GgufPath, "-p", "x", "--temp", "hot"]), expectedExit: 2);
    }

    [Fact]
    public void TokenizeWithTheRealQwenTokenizer()
    {
        if (!File.Exists(TestPaths.QwenTokenizerJson)) return; // ../shared is always present in CI
        var r = CliRunner.Run(["tokenize", "--tokenizer", TestPaths.QwenTokenizerJson, "-p", "Hello world<|im_end|>", "--ids"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        // "Hello" = 9707, " world" = 1879, <|im_end|> = 151645 in the Qwen2 vocabulary.
        Assert.Equal("9707,1879,151645", r.StdOut.Trim());
    }
}

public class CliRealTokenizerTests
{
    [Fact]
    public void SynthWithTheRealTokenizerRunsTheSameFromGgufAndHuggingFaceFolder()
    {
        if (!File.Exists(TestPaths.QwenTokenizerJson)) return; // ../shared is always present in CI
        string dir = TestPaths.NewTempDir();
        try
        {
            string gguf = Path.Combine(dir, "tiny.gguf"), hf = Path.Combine(dir, "tiny-hf");
            var synth = CliRunner.Run(["synth", "--preset", "tiny", "-o", gguf, "--type", "bf16", "--seed", "3",
                "--tokenizer", TestPaths.QwenTokenizerJson, "--hf-dir", hf]);
            Assert.True(synth.ExitCode == 0, synth.ToString());
            Assert.True(File.Exists(Path.Combine(hf, "config.json")) && File.Exists(Path.Combine(hf, "tokenizer.json")));

            string[] run = ["run", "-p", "The capital of France is", "-n", "12", "--seed", "9", "--temp", "1", "--stats", "-t", "2"];
            var fromGguf = CliRunner.Run(["run", "-m", gguf, .. run[1..]]);
            var fromHf = CliRunner.Run(["run", "-m", hf, .. run[1..]]);
            Assert.True(fromGguf.ExitCode == 0, fromGguf.ToString());
            Assert.True(fromHf.ExitCode == 0, fromHf.ToString());
            Assert.Equal(fromGguf.StdOut, fromHf.StdOut);
            Assert.Contains("generated: 12 tokens", fromGguf.StdErr);

            var info = CliRunner.Run(["info", "-m", gguf]);
            Assert.Contains("tokenizer:        151936 tokens", info.StdOut);

            // Two chat turns from standard input; the second reuses the cache of the first.
            var chat = CliRunner.Run(["chat", "-m", gguf, "-n", "8", "--seed", "1", "--stats"], stdin: "Hi there\nAnd again\n/exit\n");
            Assert.True(chat.ExitCode == 0, chat.ToString());
            Assert.Equal(2, chat.StdErr.Split('\n').Count(l => l.StartsWith("prompt:")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
