namespace EdgeLM.Tokenization;

/// <summary>
/// GPT-2's reversible byte-to-character table (bytes_to_unicode): every byte gets a printable character so that
/// byte-level BPE vocabularies can be stored as text. Printable Latin-1 bytes map to themselves, the rest to U+0100.. in order.
/// </summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToCharTable = BuildByteToChar();
    private static readonly short[] CharToByteTable = BuildCharToByte();

    /// <summary>All mapped characters lie below this bound.</summary>
    private const int CharBound = 0x144;

    public static char ByteToChar(byte b) => ByteToCharTable[b];

    /// <summary>The byte a byte-level character stands for, or -1 when the character is not in the table.</summary>
    public static int CharToByte(char c) => c < CharBound ? CharToByteTable[c] : -1;

    /// <summary>Decodes a byte-level token string; false when some character is not a byte-level character.</summary>
    public static bool TryDecode(string tokenText, out byte[] bytes)
    {
        bytes = new byte[tokenText.Length];
        for (int i = 0; i < tokenText.Length; i++)
        {
            int b = CharToByte(tokenText[i]);
            if (b < 0) return false;
            bytes[i] = (byte)b;
        }
        return true;
    }

    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = ByteToCharTable[src[i]];
        });
    }

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + extra++);
        }
        return table;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[CharBound];
        Array.Fill(table, (short)-1);
        for (int b = 0; b < 256; b++) table[ByteToCharTable[b]] = (short)b;
        return table;
    }
}
