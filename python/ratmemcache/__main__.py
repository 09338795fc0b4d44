from ratmemcache.cli import main

main()
