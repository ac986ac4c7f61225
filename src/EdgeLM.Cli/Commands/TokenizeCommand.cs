using EdgeLM.Models;
using EdgeLM.Tokenization;

namespace EdgeLM.Cli.Commands;

internal sealed class TokenizeCommand : Command
{
    public override string Name => "tokenize";
    public override string Summary => "show the token ids of a text";
    public override string Usage => "edgelm tokenize (-m MODEL | --tokenizer tokenizer.json) -p TEXT [--ids]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelOptions.Model, ModelOptions.Tokenizer,
        new("--prompt", "-p", "TEXT", "text to tokenize"),
        new("--file", "-f", "FILE", "read the text from a file"),
        new("--ids", null, null, "print only the ids, comma-separated on one line"),
        new("--no-special", null, null, "treat special-token text as plain text"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        string text = a.Get("--prompt") ?? (a.Get("--file") is { } f ? File.ReadAllText(f) : throw new UsageException("give the text with -p TEXT or -f FILE"));
        BpeTokenizer tokenizer;
        if (a.Get("--tokenizer") is { } tj && !a.Has("--model")) tokenizer = BpeTokenizer.FromFile(tj);
        else if (a.Has("--model"))
        {
            using var model = ModelLoader.Load(a.Require("--model"));
            tokenizer = ModelTokenizers.Require(model, a.Get("--tokenizer"));
        }
        else throw new UsageException("give -m MODEL or --tokenizer tokenizer.json");

        int[] ids = tokenizer.Encode(text, parseSpecial: !a.Flag("--no-special"));
        if (a.Flag("--ids"))
        {
            Console.WriteLine(string.Join(",", ids));
            return 0;
        }
        foreach (int id in ids)
            Console.WriteLine($"{id,7} {Quote(System.Text.Encoding.UTF8.GetString(tokenizer.TokenBytes(id)))}");
        Console.Error.WriteLine($"{ids.Length} tokens");
        return 0;
    }

    private static string Quote(string s)
    {
        var sb = new System.Text.StringBuilder("'");
        foreach (char c in s)
            sb.Append(c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", '\'' => "\\'", _ => c.ToString() });
        return sb.Append('\'').ToString();
    }
}
