"""The game's tables as the console reads and writes them: the rows (`rows`), parsing them leniently
(`parsing`), sane bounds (`bounds`), hourly windows and their readiness (`windows`), column orders and
bulk writes (`schema`, `bulk`), every read of the game's tables (`store`), and the database's clock
(`market_clock`: the wall clock, or a simulated market's)."""
