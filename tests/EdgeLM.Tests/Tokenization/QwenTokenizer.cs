using System.Text.Json;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

/// <summary>The real Qwen tokenizer from ../shared, loaded once for all tests, and the committed reference vectors.</summary>
internal static class QwenTokenizer
{
    private static readonly Lazy<BpeTokenizer> Shared = new(() => BpeTokenizer.FromTokenizerJson(TestPaths.QwenTokenizerJson));

    public static BpeTokenizer Instance => Shared.Value;

    public static string VectorsDir => Path.Combine(TestPaths.SharedDir, "tokenizers", "qwen", "llama.cpp-vectors");

    /// <summary>(text, ids) of tests/data/tokenizer/qwen-corpus.jsonl, produced by @lenml/tokenizers.</summary>
    public static IReadOnlyList<(string Text, int[] Ids)> Corpus => CorpusLines.Value;

    private static readonly Lazy<List<(string, int[])>> CorpusLines = new(() =>
        File.ReadLines(TestPaths.TestData("tokenizer", "qwen-corpus.jsonl"))
            .Where(line => line.Length > 0)
            .Select(line =>
            {
                using var doc = JsonDocument.Parse(line);
                return (doc.RootElement.GetProperty("text").GetString()!,
                        doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
            })
            .ToList());

    /// <summary>llama.cpp's vectors: inputs separated by "\n__ggml_vocab_test__\n", one line of ids per input.</summary>
    public static List<(string Text, int[] Ids)> LlamaCppVectors()
    {
        string inp = File.ReadAllText(Path.Combine(VectorsDir, "ggml-vocab-qwen2.gguf.inp"));
        string[] outLines = File.ReadAllLines(Path.Combine(VectorsDir, "ggml-vocab-qwen2.gguf.out"));
        string[] inputs = inp.Split("\n__ggml_vocab_test__\n");
        // The file ends with a separator, leaving one empty piece after the last input.
        Assert.Equal("", inputs[^1]);
        Assert.Equal(inputs.Length - 1, outLines.Length);
        return inputs[..^1].Select((text, i) => (text, outLines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())).ToList();
    }
}
