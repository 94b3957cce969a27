#!/usr/bin/env perl
# utils/utt2spk_to_spk2utt.pl: convert an utt2spk table ("<utt> <spk>" lines) read from the files
# given or stdin into spk2utt ("<spk> <utt1> <utt2> ...") on stdout, speakers in order of first
# appearance, as Kaldi's script of the same name does.
use strict;
use warnings;
my (%spk2utts, @order);
while (my $line = <>) {
  my @F = split(" ", $line);
  next unless @F;
  @F == 2 or die "utt2spk_to_spk2utt.pl: $ARGV:$.: expected 2 fields '<utt> <spk>', got: $line";
  my ($utt, $spk) = @F;
  push @order, $spk unless exists $spk2utts{$spk};
  push @{$spk2utts{$spk}}, $utt;
} continue { close ARGV if eof; }
foreach my $spk (@order) { print "$spk " . join(" ", @{$spk2utts{$spk}}) . "\n"; }
