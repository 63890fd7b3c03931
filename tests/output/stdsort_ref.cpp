// Reference for test_std_sort_is_libstdcxx_order: reads integers, std::sort's their indexes
// by value (not stable), prints the resulting index order.
#include <algorithm>
#include <iostream>
#include <vector>
int main() {
  std::vector<long> keys;
  long k;
  while (std::cin >> k) keys.push_back(k);
  std::vector<size_t> idx(keys.size());
  for (size_t i = 0; i < idx.size(); i++) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  for (size_t i : idx) std::cout << i << " ";
  std::cout << "\n";
}
