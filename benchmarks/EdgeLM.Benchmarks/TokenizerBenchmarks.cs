using System.Text;
using BenchmarkDotNet.Attributes;
using EdgeLM.Tokenization;

namespace EdgeLM.Benchmarks;

/// <summary>Qwen tokenizer load time and encoding throughput (evaluation tokenizes a lot of text).</summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    private string _path = "";
    private string _text = "";
    private BpeTokenizer _tokenizer = null!;

    [GlobalSetup]
    public void Setup()
    {
        _path = FindTokenizer();
        _tokenizer = BpeTokenizer.FromTokenizerJson(_path);
        var sb = new StringBuilder();
        while (sb.Length < 1_000_000)
            sb.Append("The quick brown fox, 1234, jumps over the lazy dog's bed. 你好，世界！ Привет, мир. \n");
        _text = sb.ToString();
    }

    /// <summary>Megabytes per second = 1 MB / the mean time of this benchmark.</summary>
    [Benchmark]
    public int EncodeOneMegabyte() => _tokenizer.Encode(_text).Length;

    [Benchmark]
    public int LoadTokenizerJson() => BpeTokenizer.FromTokenizerJson(_path).VocabSize;

    private static string FindTokenizer()
    {
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "tokenizers", "qwen", "tokenizer.json");
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("run from inside the repository, with ../shared/tokenizers/qwen beside it");
    }
}
