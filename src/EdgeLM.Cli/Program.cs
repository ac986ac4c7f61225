namespace EdgeLM.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("edgelm: no commands yet");
        return 1;
    }
}
